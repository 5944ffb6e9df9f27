"""The A/B page (pages/ab.py): the two policies compared (A and B), what changed between them, one
question answered by both side by side, the offline comparison over a golden set, the online
comparison of the live variants, and the release controls. One module per part:

- `common`: the page's widget keys (`ab.*`) and the policy version options;
- `rows`: pure row builders (no Streamlit calls: tests check what the page shows without a browser);
- `policies`: the pickers A and B (?a=, ?b=) and the 🧾 Policy diff tab;
- `side_by_side`, `offline`, `online`: the tabs of the same names;
- `releases` (the 🚀 Releases tab) and `release_controls` (its buttons, forms and confirmations)."""
from console.ab_view.common import keys
from console.ab_view.offline import offline
from console.ab_view.online import online
from console.ab_view.policies import pickers, policy_diff_view
from console.ab_view.release_controls import dialogs
from console.ab_view.releases import releases_tab
from console.ab_view.rows import diff_rows, offline_metric_rows
from console.ab_view.side_by_side import side_by_side

__all__ = ["diff_rows", "dialogs", "keys", "offline", "offline_metric_rows", "online", "pickers", "policy_diff_view",
           "releases_tab", "side_by_side"]
