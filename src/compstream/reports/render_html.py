"""Self-contained HTML page for a report document (inline CSS, inline SVG).

The page renders from the JSON document alone and embeds it verbatim in a
`<script type="application/json">`. Every rendered number carries
`data-path` (where it lives in the JSON), `data-value` (the exact integer) and
`data-format`; a small inline script checks them against the embedded JSON
and records the result (and any script error) on the page, so a browser run
proves the page and the data agree. A CSP forbids every network fetch.
"""

from __future__ import annotations

import json
from html import escape

from compstream.reports.html_sections import org_body, statement_body

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'")

_CSS = """
:root{--ink:#1d2330;--mute:#5b6475;--line:#e3e6ec;--bg:#f6f7f9;--accent:#4e79a7}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1000px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:var(--mute);margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin-top:16px}
section h2{margin-top:0}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--mute);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.note{color:var(--mute);font-size:13px}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:12px;word-break:break-all}svg.chart{max-width:100%;height:auto;display:block}
footer{color:var(--mute);font-size:12px;margin-top:24px}
"""

# First script: record errors on the page (a headless run reads the DOM).
_ERRORS_JS = """window.__reportErrors=[];window.addEventListener('error',function(e){
window.__reportErrors.push(String(e.message));
document.documentElement.setAttribute('data-js-errors',window.__reportErrors.join(' | '));});"""

# Last script: every data-path number must equal the embedded JSON's value.
# JSON.parse's reviver context (source text) keeps integers beyond 2^53 exact.
_SELFCHECK_JS = """(function(){var raw=document.getElementById('report-data').textContent;
var data=JSON.parse(raw,function(k,v,ctx){return (typeof v==='number'&&ctx&&ctx.source)?ctx.source:v;});
function at(path){var cur=data,re=/([^.\\[\\]]+)|\\[([^\\]]*)\\]/g,m;while((m=re.exec(path))){
if(cur===null||cur===undefined)return undefined;if(m[1]!==undefined){cur=cur[m[1]];}else{
var id=m[2],found;for(var i=0;i<cur.length;i++){if(String(cur[i].id)===id){found=cur[i];break;}}cur=found;}}
return cur;}var bad=[],els=document.querySelectorAll('[data-path]');
for(var i=0;i<els.length;i++){var el=els[i],want=at(el.getAttribute('data-path'));
if(String(want)!==el.getAttribute('data-value'))bad.push(el.getAttribute('data-path'));}
document.body.setAttribute('data-selfcheck',bad.length?'mismatch:'+bad.join(','):'ok');
document.body.setAttribute('data-checked',String(els.length));})();"""


def embedded_json(doc: dict) -> str:
    # No '<' at all inside the script element ('</script>' or '<!--' would
    # change how the HTML parser reads it); \\u003c is the same JSON string.
    return json.dumps(doc, indent=1, sort_keys=True).replace("<", "\\u003c")


def page(doc: dict, title: str, subtitle: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style><script>{_ERRORS_JS}</script></head>
<body><main><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>
{body}
<footer>Generated {escape(str(doc.get("generated_at")))} from the compstream audit history
(ClickHouse, FINAL reads). Money is exact integer nano-dollars in the JSON; shown here in dollars.
Schema {escape(str(doc.get("schema")))}.</footer></main>
<script type="application/json" id="report-data">{embedded_json(doc)}</script>
<script>{_SELFCHECK_JS}</script></body></html>
"""


def render_html(doc: dict) -> str:
    if doc.get("report") == "statement":
        return page(doc, f"Compute statement · {doc['engineer_id']}",
                    f"{doc['period']} (UTC) · compute compensation in AI-compute budget", statement_body(doc))
    if doc.get("report") == "org":
        return page(doc, f"Compute compensation across the org · {doc['period']}",
                    f"{doc['totals']['engineers']} engineers with activity · UTC period "
                    f"{doc['period_start'][:10]} to {doc['period_end'][:10]} (exclusive)", org_body(doc))
    raise ValueError(f"unknown report kind {doc.get('report')!r}")
