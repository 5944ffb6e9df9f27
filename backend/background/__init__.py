"""Work that outlives a request: long-running jobs with owners and heartbeats (jobs), database
leases (leases) and the periodic housekeeping one process runs per period (housekeeping).

May import: db, access, errors (the tables of owned records are in backend.db)."""
