"""CSS for the console's own HTML (source cards, latency bars). Colours are translucent so
they read on both the light and the dark theme."""

CSS = """
<style>
.rag-card { border: 1px solid rgba(128,128,128,.28); border-radius: .5rem; padding: .6rem .8rem .7rem;
            margin: 0 0 .6rem 0; background: rgba(128,128,128,.04); }
.rag-card-cited { border-left: 4px solid #4e79a7; }
.rag-card-head { display: flex; align-items: baseline; gap: .5rem; }
.rag-num { display: inline-block; min-width: 1.6rem; text-align: center; font-weight: 700; font-size: .85rem;
           border-radius: .35rem; padding: 0 .35rem; background: rgba(78,121,167,.18); }
.rag-num::before { content: "["; opacity: .55; } .rag-num::after { content: "]"; opacity: .55; }
.rag-title { font-weight: 600; flex: 0 1 auto; min-width: 0; }
.rag-section { font-size: .8rem; opacity: .7; white-space: nowrap; }
.rag-cited { font-size: .72rem; font-weight: 600; color: #4e79a7; border: 1px solid rgba(78,121,167,.5);
             border-radius: 1rem; padding: 0 .45rem; white-space: nowrap; }
.rag-meta { font-size: .78rem; opacity: .75; margin: .15rem 0 .35rem; overflow-wrap: anywhere; }
.rag-meta code { font-size: .74rem; padding: 0 .2rem; }
table.rag-scores { border-collapse: collapse; font-size: .8rem; margin: 0 0 .4rem; width: auto; }
table.rag-scores th, table.rag-scores td { border: none; padding: .05rem .9rem .05rem 0; text-align: left;
                                           font-variant-numeric: tabular-nums; white-space: nowrap; }
table.rag-scores th { font-weight: 600; opacity: .8; }
table.rag-scores th span { font-weight: 400; opacity: .75; margin-left: .3rem; font-size: .72rem; }
.rag-rank { opacity: .6; font-size: .72rem; }
.rag-none { opacity: .45; }
.rag-text { font-size: .86rem; line-height: 1.5; max-height: 8rem; overflow-y: auto; padding-right: .3rem;
            overflow-wrap: anywhere; }
.rag-text mark { background: rgba(255,200,0,.38); color: inherit; border-radius: .15rem; padding: 0 .05rem; }
.rag-lat { margin: .2rem 0 .3rem; }
.rag-lat-bar { display: flex; height: .8rem; border-radius: .3rem; overflow: hidden; background: rgba(128,128,128,.12); }
.rag-lat-bar span { display: block; height: 100%; }
.rag-lat-legend { display: flex; flex-wrap: wrap; gap: .2rem 1rem; font-size: .78rem; margin-top: .35rem;
                  font-variant-numeric: tabular-nums; }
.rag-lat-legend i { display: inline-block; width: .65rem; height: .65rem; border-radius: .15rem; margin-right: .3rem; }
</style>
"""
