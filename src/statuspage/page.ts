import { chartSvg } from "./chart.js";
import type { StatusPageData, SubscriptionRow } from "./data.js";
import { describeDelivery, describeRejected, runLabel, type StockRunView } from "../export/status.js";
import { SCRIPT, STYLE } from "./assets.js";

const esc = (v: unknown) =>
  String(v ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

const ago = (d: Date | null | undefined, now: Date) => {
  if (!d) return "never";
  const s = Math.round((now.getTime() - new Date(d).getTime()) / 1000);
  const text =
    Math.abs(s) < 90
      ? `${Math.abs(s)}s`
      : Math.abs(s) < 5400
        ? `${Math.round(Math.abs(s) / 60)}m`
        : `${Math.round(Math.abs(s) / 3600)}h`;
  return `<time datetime="${new Date(d).toISOString()}" title="${new Date(d).toISOString()}">${s >= 0 ? `${text} ago` : `in ${text}`}</time>`;
};

/** A form that works without JavaScript (token typed in) and, with it, asks the token once per session. */
function action(path: string, label: string, enabled: boolean, cls = ""): string {
  if (!enabled) return "";
  return `<form method="post" action="/status${path}" data-api="/api${path}" class="act">
<input type="password" name="token" placeholder="admin token" autocomplete="off" aria-label="admin token" required>
<button type="submit" class="${cls}">${esc(label)}</button></form>`;
}

function subscriptionRow(s: SubscriptionRow, d: StatusPageData): string {
  const toggle =
    s.status === "enabled"
      ? action(`/subscriptions/${encodeURIComponent(s.name)}/pause`, "Pause", d.adminEnabled)
      : action(`/subscriptions/${encodeURIComponent(s.name)}/resume`, "Resume", d.adminEnabled, "primary");
  const rate = `${s.rate.toFixed(1)}/s${s.limit !== null ? ` of ${Number(s.limit.toFixed(1))}/s` : ""}`;
  const error = s.last_error
    ? `<span class="err">${esc(s.last_error)}</span> ${ago(s.last_failure_at, d.now)}`
    : "—";
  return `<tr data-subscription="${esc(s.name)}">
<th scope="row">${esc(s.name)}${s.internal ? ' <span class="tag">notification</span>' : ""}</th>
<td data-label="State"><span class="state ${esc(s.status)}" data-field="status">${esc(s.status)}</span>${s.status_reason && s.status !== "enabled" ? `<div class="small">${esc(s.status_reason)}</div>` : ""}</td>
<td data-label="Backlog" data-field="backlog">${s.backlog}</td>
<td data-label="Delivered 1h" data-field="delivered_last_hour">${s.delivered_last_hour}</td>
<td data-label="Failed 1h" data-field="failed_last_hour">${s.failed_last_hour}</td>
<td data-label="Rate">${rate}</td>
<td data-label="Last success">${ago(s.last_success_at, d.now)}</td>
<td data-label="Last error">${error}</td>
<td data-label="">${toggle}</td></tr>`;
}

/** Parts delivered of parts, per subscription: whether the OMS has the run yet. */
const deliveryLine = (r: StockRunView, prefix = "delivered") =>
  r.delivery.length
    ? `<div class="small" data-field="delivery">${esc(prefix)}: ${esc(describeDelivery(r.delivery))}</div>${describeRejected(
        r.delivery,
      )
        .map((line) => `<div class="small err" data-field="rejected">${esc(line)}</div>`)
        .join("")}`
    : "";

function runCell(
  label: string,
  r: StockRunView | null,
  next: Date | null,
  now: Date,
  sent?: StockRunView | null,
): string {
  const body = r
    ? `<div class="big">${esc(runLabel(r))}</div><div>${ago(r.finished_at ?? r.started_at, now)} · ${r.rows ?? 0} rows · ${r.parts ?? 0} part(s) · ${((r.duration_ms ?? 0) / 1000).toFixed(1)}s</div>${deliveryLine(r)}${r.detail ? `<div class="small err">${esc(r.detail)}</div>` : ""}`
    : `<div class="big">none yet</div>`;
  // An empty delta sends nothing: show where the last delta that did send stands.
  const last =
    sent && sent.id !== r?.id ? deliveryLine(sent, `last sent delta (${ago(sent.finished_at, now)})`) : "";
  return `<div class="card"><h3>${label}</h3>${body}${last}<div class="small">next: ${next ? ago(next, now) : "not scheduled in this process"}</div></div>`;
}

/** The hourly full is the safety net: say loudly when it has not succeeded for too long. */
function overdueBanner(d: StatusPageData): string {
  if (!d.stock.full_overdue) return "";
  const last = d.stock.last_successful_full_at;
  return `<p class="flash err" role="alert" data-field="full_overdue"><strong>full overdue</strong>: the last successful full snapshot ${last ? `started ${ago(last, d.now)}` : "never ran"}; see the last full below and the log.</p>`;
}

function deadTable(d: StatusPageData): string {
  if (!d.dead.length) return `<p class="muted">No dead messages.</p>`;
  const rows = d.dead
    .map(
      (
        m,
      ) => `<tr data-delivery="${m.id}"><td data-label="Id">${m.id}</td><td data-label="Subscription">${esc(m.subscription)}</td>
<td data-label="Subject">${esc(m.subject)}</td><td data-label="webhook-id"><code>${esc(m.message_id)}</code></td>
<td data-label="Last error" class="err">${esc(m.last_error ?? "")}</td><td data-label="Since">${ago(m.updated_at, d.now)}</td>
<td>${action(`/deliveries/${m.id}/replay`, "Replay", d.adminEnabled, "primary")}</td></tr>`,
    )
    .join("");
  return `<table class="list"><thead><tr><th>Id</th><th>Subscription</th><th>Subject</th><th>webhook-id</th><th>Last error</th><th>Since</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** The whole page: readable with JavaScript off; with it on, refreshes itself and asks the token once. */
export function renderStatusPage(d: StatusPageData, flash?: string): string {
  const subs = d.subscriptions.map((s) => subscriptionRow(s, d)).join("");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>stock-sync status</title>
<style>${STYLE}</style></head><body>
<header><h1>stock-sync</h1><span class="muted">status at ${esc(d.now.toISOString().replace("T", " ").slice(0, 19))} UTC</span>
<a href="/status" class="refresh">refresh</a></header>
${flash ? `<p class="flash" role="status">${esc(flash)}</p>` : ""}
${d.adminEnabled ? "" : `<p class="muted small">Buttons are hidden: set <code>server.admin_token</code> to pause, resume and replay from here.</p>`}
<section><h2>Subscriptions</h2>
<table class="list" id="subscriptions"><thead><tr><th>Name</th><th>State</th><th>Backlog</th><th>Delivered 1h</th><th>Failed 1h</th><th>Rate</th><th>Last success</th><th>Last error</th><th></th></tr></thead>
<tbody>${subs}</tbody></table></section>
<section><h2>Stock</h2>${overdueBanner(d)}<div class="cards">
${runCell("Last full", d.stock.last_full, d.stock.next_full, d.now)}
${runCell("Last delta", d.stock.last_delta, d.stock.next_delta, d.now, d.stock.last_delta_sent)}
</div></section>
<section><h2>Deliveries per minute, last hour</h2><div class="chart">${chartSvg(d.perMinute, d.now)}</div>
<p class="small muted"><span class="key ok"></span> delivered <span class="key fail"></span> failed</p></section>
<section><h2>Dead messages</h2>${deadTable(d)}</section>
<footer class="small muted">JSON: <a href="/api/status">/api/status</a> · metrics: <a href="/metrics">/metrics</a></footer>
<script>${SCRIPT}</script></body></html>`;
}
