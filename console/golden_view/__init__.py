"""The golden-set annotator page (pages/golden_sets.py). Each section reads its widgets, calls one
backend service (services.golden, services.engine, services.traces, services.evals) and renders the
answer; checks, history and audit live in the backend. Widget keys are namespaced `golden.*`.

The annotation flow keeps its working state in session state: the last search's result cards, the
chunks ticked as gold (kept across searches, so one item can gather references from several
queries) and the question being written. The chosen set is mirrored to ?set=. One module per part:

- `common`: the page's keys and the ticked chunks;
- `sets`: choose, create and freeze a set;
- ✍️ Annotate: `search` (question and search), `results` (the cards to tick or widen), `item` (save it);
- `review` (📥 Review queue), `items` (📋 Items and 📈 Progress), `files` (⇅ Import / export)."""
from console.golden_view.common import keys
from console.golden_view.files import export_section, import_section
from console.golden_view.item import item_form
from console.golden_view.items import items_table, progress
from console.golden_view.results import results
from console.golden_view.review import review_queue
from console.golden_view.search import search_form
from console.golden_view.sets import choose_set

__all__ = ["choose_set", "export_section", "import_section", "item_form", "items_table", "keys", "progress", "results",
           "review_queue", "search_form"]
