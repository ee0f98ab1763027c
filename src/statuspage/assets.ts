/** Inline CSS and JS for the status page: no build step, nothing fetched. */

export const STYLE = `
:root{--bg:#f7f7f5;--fg:#1d1f21;--muted:#6b6f76;--line:#e1e3e6;--ok:#2e8b57;--warn:#c98a00;--bad:#c0392b;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg);padding:16px;max-width:1200px;margin:auto}
header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}h1{font-size:22px;margin:0}h2{font-size:17px;margin:24px 0 8px}h3{font-size:14px;margin:0 0 6px;color:var(--muted);font-weight:600}
.muted{color:var(--muted)}.small{font-size:12.5px}.big{font-size:18px;font-weight:600}.err{color:var(--bad)}code{font-size:12px}
.refresh{margin-left:auto}a{color:#1a5fb4}
table.list{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
.list th,.list td{padding:8px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}.list thead th{font-size:12.5px;color:var(--muted);font-weight:600;background:#fafafa}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12.5px;font-weight:600;color:#fff}.state.enabled{background:var(--ok)}.state.paused{background:var(--warn)}.state.deactivated{background:var(--bad)}
.tag{font-size:11px;color:var(--muted);border:1px solid var(--line);border-radius:6px;padding:0 4px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:12px}.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}.chart svg{width:100%;height:140px;display:block}
rect.ok,.key.ok{fill:var(--ok);background:var(--ok)}rect.fail,.key.fail{fill:var(--bad);background:var(--bad)}.key{display:inline-block;width:10px;height:10px;border-radius:2px}.axis{font-size:10px;fill:var(--muted)}.base{stroke:var(--line)}
form.act{display:flex;gap:6px;margin:0}form.act input{width:110px;padding:4px 6px;border:1px solid var(--line);border-radius:6px}
button{padding:4px 12px;border-radius:6px;border:1px solid #b9bec5;background:#fff;cursor:pointer;font:inherit}button.primary{background:#1a5fb4;color:#fff;border-color:#1a5fb4}
.js form.act input{display:none}.flash{background:#eef6ee;border:1px solid #cfe6cf;padding:8px 12px;border-radius:8px}
@media (max-width:760px){.list thead{display:none}.list tr{display:block;border-bottom:1px solid var(--line);padding:6px 0}.list th,.list td{display:flex;flex-wrap:wrap;gap:2px 8px;justify-content:space-between;border:0;padding:3px 10px}.list td .small{flex-basis:100%;text-align:right}
.list td[data-label]:before{content:attr(data-label);color:var(--muted);font-size:12.5px;margin-right:12px}}
`;

// Progressive enhancement: the token is asked once and kept in sessionStorage (this tab only),
// actions go to the admin API with a bearer token, and the page refreshes itself every 5 s.
export const SCRIPT = `
document.documentElement.classList.add("js");
function token(){var t=sessionStorage.getItem("stock-sync-token");if(!t){t=prompt("Admin token");if(t)sessionStorage.setItem("stock-sync-token",t)}return t}
document.querySelectorAll("form.act").forEach(function(f){f.querySelector("input").removeAttribute("required");
f.addEventListener("submit",function(e){e.preventDefault();var t=token();if(!t)return;
fetch(f.dataset.api,{method:"POST",headers:{authorization:"Bearer "+t}}).then(function(r){
if(r.status===401||r.status===403){sessionStorage.removeItem("stock-sync-token");alert("The admin token was refused.");return}
location.reload()})})});
setInterval(function(){if(!document.hidden&&document.activeElement===document.body)location.reload()},5000);
`;
