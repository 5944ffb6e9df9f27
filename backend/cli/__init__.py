"""The command line (`python -m backend ...`): one parser (main), one place that builds services
for a command (common), and the commands grouped as the user sees them: index, eval, release,
users and keys (access).

May import everything in backend/; nothing imports it but `backend.__main__`."""
