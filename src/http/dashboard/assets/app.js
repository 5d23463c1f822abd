// Trackly dashboard: a client of the admin API (/api/v1) and nothing else.
// Every value from the API is written as text (textContent), never as HTML.
// Views: #/schedules, #/campaign/<schedule id>, #/queue, #/daemons.
"use strict";

(function () {
  const TOKEN_KEY = "trackly.token";
  // Polling: the campaign's run once a second (never faster), the rest less often.
  const RUN_EVERY_MS = 1000;
  const VIEW_EVERY_MS = 3000;
  // The queue view costs a few store reads per list.
  const QUEUE_EVERY_MS = 5000;
  const MAX_SAMPLES = 900;

  let role = null;
  let timers = [];
  let viewSeq = 0;

  // ---------------------------------------------------------------- helpers
  function $(id) { return document.getElementById(id); }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function fmtInt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
  function fmtPct(n) { return n === null || n === undefined ? "—" : n.toFixed(1) + " %"; }
  function fmtRate(n) { return n === null || n === undefined ? "—" : n.toFixed(1) + " msg/s"; }
  function fmtTime(t) { return t ? new Date(t).toLocaleString() : "—"; }
  function fmtDur(sec) {
    if (sec === null || sec === undefined || !isFinite(sec)) return "—";
    sec = Math.max(0, Math.round(sec));
    const hh = Math.floor(sec / 3600), mm = Math.floor((sec % 3600) / 60), ss = sec % 60;
    if (hh) return hh + " h " + mm + " min";
    if (mm) return mm + " min " + ss + " s";
    return ss + " s";
  }
  function badge(text) { return h("span", { class: "badge " + String(text).toLowerCase(), text: text }); }
  function bar(pct) {
    const p = Math.max(0, Math.min(100, pct || 0));
    return h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": p.toFixed(0), "aria-label": "progress" }, fill(p));
  }
  // The bar's fill (a style property, not a style attribute: the page's
  // Content-Security-Policy allows no inline styles).
  function fill(p) { const f = h("span"); f.style.width = p.toFixed(1) + "%"; return f; }
  let statusTimer = null;
  function status(msg) {
    $("status").textContent = msg || "";
    clearTimeout(statusTimer);
    if (msg) statusTimer = setTimeout(() => { $("status").textContent = ""; }, 8000);
  }
  function isOperator() { return role === "operator"; }

  // A table: columns [{label, num?}], rows of cells (Node or text).
  function table(id, columns, rows, empty) {
    if (!rows.length) return h("p", { class: "muted", id: id, text: empty || "Nothing yet." });
    return h("div", { class: "scroll" },
      h("table", { class: "responsive", id: id },
        h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.num ? "num" : null, text: c.label })))),
        h("tbody", {}, rows.map(r => h("tr", {}, r.map((cell, i) =>
          h("td", { class: columns[i].num ? "num" : null, "data-label": columns[i].label }, cell)))))));
  }

  // ------------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, code, message) { super(message || code); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const init = { method, headers: { Authorization: "Bearer " + token, Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch("/api/v1" + path, init);
    } catch (e) {
      throw new ApiError(0, "unreachable", "the daemon does not answer");
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (res.status === 401) {
      signOut("The token was refused; sign in again.");
      throw new ApiError(401, "unauthorized", "unauthorized");
    }
    if (!res.ok) {
      throw new ApiError(res.status, data && data.error, (data && data.message) || res.statusText);
    }
    return data;
  }

  // An operator action: a button that calls the API, then refreshes the view.
  function action(label, id, fn, opts) {
    opts = opts || {};
    const b = h("button", { type: "button", id: id, class: "op " + (opts.class || "") });
    b.textContent = label;
    b.addEventListener("click", async () => {
      if (opts.confirm && !window.confirm(opts.confirm)) return;
      b.disabled = true;
      try {
        const out = await fn();
        status(opts.done ? opts.done(out) : label + ": done");
        if (opts.after) opts.after();
      } catch (e) {
        status(label + " failed: " + e.message);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  // --------------------------------------------------------------- sign-in
  function signOut(msg) {
    sessionStorage.removeItem(TOKEN_KEY);
    role = null;
    stopTimers();
    $("nav").hidden = true;
    $("signout").hidden = true;
    $("who").textContent = "";
    $("view").hidden = true;
    $("view").replaceChildren();
    $("signin").hidden = false;
    $("signin-error").textContent = msg || "";
    $("token").value = "";
    $("token").focus();
  }

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      const me = await api("GET", "/whoami");
      role = me.role;
      $("who").textContent = (role === "operator" ? "Operator" : "Read-only") + " · " + me.instance + " · v" + me.version;
      $("nav").hidden = false;
      $("signout").hidden = false;
      $("signin").hidden = true;
      $("view").hidden = false;
      return true;
    } catch (e) {
      if (e.status !== 401) $("signin-error").textContent = "Cannot sign in: " + e.message;
      return false;
    }
  }

  // ---------------------------------------------------------------- router
  function stopTimers() { timers.forEach(t => clearInterval(t)); timers = []; viewSeq++; }

  function every(ms, fn) {
    const seq = viewSeq;
    let busy = false;
    const tick = async () => {
      if (busy || seq !== viewSeq) return;
      busy = true;
      try { await fn(); } catch (e) { if (e.status !== 401) status("Refresh failed: " + e.message); }
      finally { busy = false; }
    };
    tick();
    timers.push(setInterval(tick, ms));
  }

  async function route() {
    if (!role) return;
    stopTimers();
    const hash = location.hash || "#/schedules";
    const parts = hash.replace(/^#\/?/, "").split("/");
    const view = $("view");
    view.replaceChildren();
    status("");
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.view === parts[0] || (parts[0] === "campaign" && a.dataset.view === "schedules")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (parts[0] === "signout") { signOut("Signed out."); history.replaceState(null, "", "#/schedules"); return; }
    if (parts[0] === "campaign" && /^[0-9a-f]{24}$/.test(parts[1] || "")) return campaignView(view, parts[1]);
    if (parts[0] === "queue") return queueView(view);
    if (parts[0] === "daemons") return daemonsView(view);
    return schedulesView(view);
  }

  // ------------------------------------------------------------- schedules
  function schedulesView(view) {
    document.title = "Schedules · Trackly";
    const body = h("div", { id: "schedules-body" });
    view.append(h("h1", { text: "Schedules" }),
      h("p", { class: "muted", text: "Click a campaign to see its live stats." }), body);
    every(VIEW_EVERY_MS, async () => {
      const data = await api("GET", "/schedules");
      const rows = data.schedules.map(s => {
        const p = s.progress;
        return [
          h("a", { href: "#/campaign/" + s.id, class: "campaign-link", text: s.name }),
          badge(s.status),
          s.kind === "recurring" ? s.cron : "once",
          fmtTime(s.next_run_at),
          fmtInt(s.audience),
          p ? h("div", {}, bar(p.percent), h("span", { class: "muted", text: fmtInt(p.done) + " of " + fmtInt(p.queued) })) : "no run yet",
          s.latest_run ? badge(s.latest_run.status) : "—",
        ];
      });
      body.replaceChildren(table("schedules-table",
        [{ label: "Campaign" }, { label: "Status" }, { label: "When" }, { label: "Next run" },
          { label: "Audience", num: true }, { label: "Progress" }, { label: "Latest run" }],
        rows, "No schedules."));
    });
  }

  // -------------------------------------------------------------- campaign
  function campaignView(view, scheduleId) {
    const seq = viewSeq;
    const st = { schedule: null, run: null, list: null, samples: [], failedCodes: {}, explain: null, tick: 0 };
    const el = {
      title: h("h1", { id: "campaign-title", text: "Campaign" }),
      meta: h("p", { class: "muted", id: "campaign-meta" }),
      actions: h("div", { id: "actions" }),
      cards: h("div", { class: "cards", id: "stats" }),
      rates: h("div", { class: "cards", id: "rates" }),
      progress: h("div", { id: "progress" }),
      charts: h("div", { class: "charts" }),
      failures: h("div", { id: "failures" }),
      skipped: h("div", { id: "skipped" }),
    };
    const sendChart = h("figure", {}, h("figcaption", { text: "Send rate (msg/s)" }), h("div", { id: "chart-send" }));
    const delivChart = h("figure", {}, h("figcaption", { text: "Delivered (cumulative)" }), h("div", { id: "chart-delivered" }));
    el.charts.append(sendChart, delivChart);
    view.append(h("p", {}, h("a", { href: "#/schedules", text: "← Schedules" })), el.title, el.meta, el.actions,
      h("h2", { text: "Live stats" }), el.cards, h("h2", { text: "Rates" }), el.rates,
      h("h2", { text: "Estimate and progress" }), el.progress,
      h("h2", { text: "Over time" }), el.charts,
      h("div", { class: "cols" },
        h("section", {}, h("h2", { text: "Failures by reason" }), el.failures),
        h("section", {}, h("h2", { text: "Skipped at audience evaluation" }), el.skipped)));

    async function loadSchedule() {
      const sc = await api("GET", "/schedules/" + scheduleId);
      st.schedule = sc;
      const latest = (sc.runs || [])[0] || null;
      if (latest && (!st.run || st.run._id !== latest._id)) st.samples = [];
      if (latest) st.run = latest;
      if (!st.list || st.tick % 5 === 0) st.list = await api("GET", "/lists/" + sc.sending_list);
      if (!latest && !st.explain) {
        try { st.explain = await api("POST", "/schedules/" + scheduleId + "/explain"); }
        catch (e) { st.explain = { error: e.message }; }
      }
    }

    async function loadFailures() {
      if (!st.run) return;
      const f = await api("GET", "/failed?schedule=" + scheduleId + "&limit=500");
      const codes = {};
      for (const item of f.failed.concat(f.in_doubt)) {
        if (item.run && item.run !== st.run._id) continue;
        const by = codes[item.reason] || (codes[item.reason] = {});
        const code = item.provider_code || "none";
        by[code] = (by[code] || 0) + 1;
      }
      st.failedCodes = codes;
    }

    function renderHeader() {
      const sc = st.schedule, l = st.list, r = st.run;
      document.title = sc.name + " · Trackly";
      el.title.replaceChildren(sc.name + " ", badge(sc.status));
      el.meta.replaceChildren(
        "List ", h("a", { href: "#/queue", text: l ? l.name : sc.sending_list }),
        l ? h("span", {}, " (", l.provider.kind, ", ", fmtInt(l.rate_limit_per_minute), "/min", l.status === "paused" ? ", paused" : "", ")") : "",
        r ? h("span", {}, " · run ", badge(r.status), " of ", fmtTime(r.occurrence)) : " · no run yet",
        sc.next_run_at ? " · next run " + fmtTime(sc.next_run_at) : "");
    }

    function renderActions() {
      if (!isOperator()) { el.actions.replaceChildren(); return; }
      const sc = st.schedule, listId = sc.sending_list;
      const refresh = () => { st.tick = 0; st.list = null; tick(true); };
      const ended = sc.status === "cancelled" || sc.status === "done";
      el.actions.replaceChildren(
        h("div", { class: "actions" }, h("span", { class: "label", text: "Sending (the whole list):" }),
          action("Pause sending", "pause", () => api("POST", "/lists/" + listId + "/pause"), { after: refresh, done: () => "Paused: no daemon sends on this list" }),
          action("Resume sending", "resume", () => api("POST", "/lists/" + listId + "/resume"), { after: refresh, done: () => "Resumed" })),
        h("div", { class: "actions" }, h("span", { class: "label", text: "Schedule:" }),
          ended ? h("span", { class: "muted", text: "ended (" + sc.status + ")" }) : [
            sc.status === "paused"
              ? action("Resume schedule", "resume-schedule", () => api("POST", "/schedules/" + scheduleId + "/resume"), { after: refresh, class: "secondary" })
              : action("Pause schedule", "pause-schedule", () => api("POST", "/schedules/" + scheduleId + "/pause"), { after: refresh, class: "secondary" }),
            action("Cancel schedule", "cancel-schedule", () => api("POST", "/schedules/" + scheduleId + "/cancel"),
              { after: refresh, class: "danger", confirm: "Cancel this schedule? It never triggers again (messages already queued are still sent unless the list is paused)." }),
          ]));
    }

    function card(k, v, id) { return h("div", { class: "card" }, h("div", { class: "k", text: k }), h("div", { class: "v", id: id, text: v })); }

    function renderStats() {
      const r = st.run;
      if (!r) {
        el.cards.replaceChildren(h("p", { class: "muted", text: "This schedule has not run yet." }));
        el.rates.replaceChildren();
        return;
      }
      const x = r.stats, failed = Object.values(x.failed || {}).reduce((a, b) => a + b, 0);
      el.cards.replaceChildren(
        card("Queued", fmtInt(r.queued), "stat-queued"),
        card("Sent", fmtInt(x.sent), "stat-sent"),
        card("Delivered", fmtInt(x.delivered), "stat-delivered"),
        card("Failed", fmtInt(failed), "stat-failed"),
        card("Clicked", fmtInt(x.clicked), "stat-clicked"));
      const rt = r.rates || {};
      el.rates.replaceChildren(
        card("Send rate", fmtRate(rt.send_rate), "rate-send"),
        card("Delivery rate", fmtPct(rt.delivery_rate), "rate-delivery"),
        card("Failure rate", fmtPct(rt.failure_rate), "rate-failure"),
        card("Click rate", fmtPct(rt.click_rate), "rate-click"));
    }

    // The explain's estimate (the queued messages at the list's rate) against
    // what has happened, and the time to completion at the current rate.
    function renderProgress() {
      const r = st.run, l = st.list;
      if (!r) {
        const e = st.explain;
        el.progress.replaceChildren(!e ? h("p", { class: "muted", text: "Explaining…" })
          : e.error ? h("p", { class: "muted", text: "Explain: " + e.error })
            : h("p", { id: "estimate" }, "Explain: " + fmtInt(e.eligible) + " of " + fmtInt(e.unique_contacts) +
              " contacts eligible; sending takes about " + fmtDur(e.send_seconds) + " at " + fmtInt(e.rate_per_minute) + "/min."));
        return;
      }
      const p = r.progress || { queued: r.queued, done: 0, percent: null };
      const rate = l ? l.rate_limit_per_minute : null;
      const estimate = rate ? p.queued / (rate / 60) : null;
      const first = r.stats.first_sent_at ? Date.parse(r.stats.first_sent_at) : null;
      const last = r.stats.last_sent_at ? Date.parse(r.stats.last_sent_at) : null;
      const finished = p.queued > 0 && p.done >= p.queued && r.status !== "evaluating";
      const elapsed = first ? ((finished && last ? last : Date.now()) - first) / 1000 : 0;
      const current = recentRate();
      const remaining = Math.max(0, p.queued - p.done);
      const eta = finished ? 0 : current > 0 ? remaining / current : null;
      el.progress.replaceChildren(
        h("div", { class: "actions" }, h("div", { class: "grow" }, bar(p.percent)),
          h("span", { id: "progress-text", text: fmtInt(p.done) + " of " + fmtInt(p.queued) + " (" + fmtPct(p.percent) + ")" })),
        table("estimate-table", [{ label: "" }, { label: "Estimate (explain: queued at the list's rate)" }, { label: "Actual" }], [
          ["Duration", fmtDur(estimate), finished ? fmtDur(elapsed) : fmtDur(elapsed) + " so far"],
          ["Rate", rate ? (rate / 60).toFixed(1) + " msg/s" : "—",
            finished ? (elapsed > 0 ? (p.done / elapsed).toFixed(1) + " msg/s on average" : "—")
              : current !== null ? current.toFixed(1) + " msg/s now" : "—"],
          ["Time to completion", estimate !== null ? fmtDur(Math.max(0, estimate - elapsed)) : "—",
            h("span", { id: "eta", text: finished ? "finished" : (l && l.status === "paused") ? "paused" : fmtDur(eta) })],
        ]));
    }

    // msg/s over the last ~10 s of samples.
    function recentRate() {
      const n = st.samples.length;
      if (n < 2) return null;
      const b = st.samples[n - 1];
      let a = st.samples[0];
      for (let i = n - 2; i >= 0; i--) { a = st.samples[i]; if (b.t - a.t >= 10000) break; }
      const dt = (b.t - a.t) / 1000;
      return dt > 0 ? Math.max(0, (b.done - a.done) / dt) : null;
    }

    function renderCharts() {
      const pts = st.samples;
      // Over a 5 s window: the runs' counters are written once a second, so
      // one-second differences would alias.
      const rates = [];
      let j = 0;
      for (let i = 1; i < pts.length; i++) {
        while (j < i - 1 && pts[i].t - pts[j + 1].t >= 5000) j++;
        const dt = (pts[i].t - pts[j].t) / 1000;
        rates.push({ t: pts[i].t, v: dt > 0 ? Math.max(0, (pts[i].sent - pts[j].sent) / dt) : 0 });
      }
      $("chart-send") && $("chart-send").replaceChildren(chart(rates, "send rate", ""));
      $("chart-delivered") && $("chart-delivered").replaceChildren(chart(pts.map(p => ({ t: p.t, v: p.delivered })), "delivered", "alt"));
    }

    function renderFailures() {
      const r = st.run;
      if (!r) { el.failures.replaceChildren(h("p", { class: "muted", text: "No run yet." })); return; }
      const rows = Object.entries(r.stats.failed || {}).sort((a, b) => b[1] - a[1]).map(([reason, n]) => {
        const codes = Object.entries(st.failedCodes[reason] || {}).sort((a, b) => b[1] - a[1])
          .map(([c, k]) => c + " ×" + k).join(", ");
        const cells = [h("code", { text: reason }), fmtInt(n), codes || "—"];
        if (isOperator()) {
          const inDoubt = reason === "NO_RESPONSE";
          cells.push(action(inDoubt ? "Resend (in doubt)" : "Resend failed", "resend-" + reason.toLowerCase(),
            () => api("POST", "/failed/requeue", { reason, schedule: scheduleId, include_in_doubt: inDoubt || undefined }),
            { class: "secondary", confirm: inDoubt ? "These messages may have been delivered. Resend them anyway?" : null,
              done: out => "Resent " + out.requeued.length + ", skipped " + out.skipped.length }));
        }
        return cells;
      });
      const cols = [{ label: "Reason" }, { label: "Messages", num: true }, { label: "Provider codes (newest 500)" }];
      if (isOperator()) cols.push({ label: "Resend to failed only" });
      el.failures.replaceChildren(table("failures-table", cols, rows, "No failures."));
    }

    function renderSkipped() {
      const r = st.run;
      if (!r) {
        const e = st.explain;
        const rows = e && e.skipped ? Object.entries(e.skipped).map(([k, n]) => [k.replace(/_/g, " ") + " (would skip)", fmtInt(n)]) : [];
        el.skipped.replaceChildren(table("skipped-table", [{ label: "Reason" }, { label: "Contacts", num: true }], rows, "None."));
        return;
      }
      const rows = Object.entries(r.skipped || {}).sort((a, b) => b[1] - a[1]).map(([k, n]) => [k.replace(/_/g, " "), fmtInt(n)]);
      el.skipped.replaceChildren(
        h("p", { class: "muted", text: fmtInt(r.audience) + " contacts in the audiences, " + fmtInt(r.eligible) + " eligible." }),
        table("skipped-table", [{ label: "Reason" }, { label: "Contacts", num: true }], rows, "None skipped."));
    }

    let lastActionsKey = null;
    async function tick(force) {
      if (seq !== viewSeq) return;
      if (!st.schedule || st.tick % 5 === 0 || force) {
        await loadSchedule();
        await loadFailures();
      } else if (st.run) {
        st.run = await api("GET", "/runs/" + st.run._id);
      }
      st.tick++;
      if (seq !== viewSeq) return;
      if (st.run) {
        const x = st.run.stats;
        const failed = Object.values(x.failed || {}).reduce((a, b) => a + b, 0);
        st.samples.push({ t: Date.now(), sent: x.sent, done: x.sent + failed, delivered: x.delivered });
        if (st.samples.length > MAX_SAMPLES) st.samples.shift();
      }
      renderHeader();
      const key = role + st.schedule.status + (st.list && st.list.status);
      if (key !== lastActionsKey) { renderActions(); lastActionsKey = key; }
      renderStats();
      renderProgress();
      renderCharts();
      if (st.tick % 5 === 1 || force) {
        const focused = document.activeElement && document.activeElement.id;
        renderFailures(); renderSkipped();
        if (focused && $(focused)) $(focused).focus();
      }
    }
    every(RUN_EVERY_MS, () => tick(false));
  }

  // A line chart in plain SVG: values over time.
  function chart(points, what, cls) {
    const W = 600, H = 170, L = 46, R = 8, T = 10, B = 22;
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img" });
    const last = points.length ? points[points.length - 1].v : null;
    svg.setAttribute("aria-label", what + (last === null ? ": no data yet" : ": now " + last.toFixed(1)));
    const max = Math.max(1, ...points.map(p => p.v));
    const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    const x = t => L + (W - L - R) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
    const y = v => T + (H - T - B) * (1 - v / max);
    for (const f of [0, 0.5, 1]) {
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
      const label = s("text", { x: L - 6, y: y(max * f) + 4, "text-anchor": "end" });
      label.textContent = (max * f) >= 100 ? Math.round(max * f).toLocaleString("en-US") : (max * f).toFixed(1);
      svg.append(label);
    }
    const span = s("text", { x: W - R, y: H - 4, "text-anchor": "end" });
    span.textContent = points.length > 1 ? "last " + fmtDur((t1 - t0) / 1000) : "waiting for data";
    svg.append(span);
    if (points.length > 1) {
      svg.append(s("polyline", { class: "line " + cls, points: points.map(p => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" ") }));
    }
    return svg;
  }

  // ----------------------------------------------------------------- queue
  function queueView(view) {
    document.title = "Queue · Trackly";
    const body = h("div", { id: "queue-body" });
    view.append(h("h1", { text: "Queue" }),
      h("p", { class: "muted", text: "Per sending list. Current rate: what the live daemons sent per minute before their last heartbeat." }), body);
    every(QUEUE_EVERY_MS, async () => {
      const data = await api("GET", "/lists");
      const rows = data.lists.map(l => {
        const d = l.in_doubt;
        const cells = [
          h("span", {}, h("strong", { text: l.name }), h("br"), h("code", { class: "muted id", text: l.id })),
          l.provider,
          l.paused ? badge("paused") : badge("active"),
          fmtInt(l.queue_depth) + (l.claimed ? " (" + fmtInt(l.claimed) + " claimed)" : ""),
          fmtInt(l.rate_limit_per_minute) + "/min",
          fmtInt(l.current_rate_per_minute) + "/min",
          l.served_by.length ? l.served_by.join(", ") : (l.able.length ? "none now (able: " + l.able.join(", ") + ")" : "no live daemon can"),
          h("span", {}, fmtInt(d.waiting) + " waiting, " + fmtInt(d.taken) + " taken by the provider, " + fmtInt(d.resent) + " resent"),
        ];
        if (isOperator()) {
          cells.push(l.paused
            ? action("Resume", "resume-list-" + l.id, () => api("POST", "/lists/" + l.id + "/resume"), { class: "secondary" })
            : action("Pause", "pause-list-" + l.id, () => api("POST", "/lists/" + l.id + "/pause"), { class: "secondary" }));
        }
        return cells;
      });
      const cols = [{ label: "List" }, { label: "Provider" }, { label: "State" }, { label: "Depth", num: true },
        { label: "Rate limit", num: true }, { label: "Current rate", num: true }, { label: "Served by" }, { label: "In doubt" }];
      if (isOperator()) cols.push({ label: "Sending" });
      // Keep a focused button focused across refreshes.
      const focused = document.activeElement && document.activeElement.id;
      body.replaceChildren(table("queue-table", cols, rows, "No sending lists."));
      if (focused && $(focused)) $(focused).focus();
    });
  }

  // --------------------------------------------------------------- daemons
  function daemonsView(view) {
    document.title = "Daemons · Trackly";
    const body = h("div", { id: "daemons-body" });
    view.append(h("h1", { text: "Daemons" }), body);
    every(VIEW_EVERY_MS, async () => {
      const data = await api("GET", "/daemons");
      const rows = data.daemons.map(d => [
        h("span", {}, h("strong", { text: d.daemon_id }), d.this ? " (this one)" : "", h("br"), h("code", { class: "muted id", text: d.instance })),
        d.version,
        badge(d.status),
        fmtDur(d.lease_age_ms / 1000) + " of " + fmtDur(d.lease_ttl_ms / 1000),
        d.lists.length ? d.lists.map(l => l + (d.sent_per_minute[l] ? " (" + d.sent_per_minute[l] + "/min)" : "")).join(", ") : "none",
        d.providers.join(", ") || "none",
        fmtTime(d.started_at),
      ]);
      body.replaceChildren(table("daemons-table",
        [{ label: "Daemon" }, { label: "Version" }, { label: "Readiness" }, { label: "Lease age" },
          { label: "Lists served" }, { label: "Providers" }, { label: "Started" }],
        rows, "No daemon holds a lease."),
        data.older ? h("p", { class: "muted", text: data.older + " older stopped or lapsed instances not shown." }) : "");
    });
  }

  // ------------------------------------------------------------------ start
  document.addEventListener("DOMContentLoaded", async () => {
    $("signin-form").addEventListener("submit", async ev => {
      ev.preventDefault();
      const t = $("token").value.trim();
      if (!t) return;
      $("signin-error").textContent = "";
      if (await signIn(t)) { if (!location.hash) location.hash = "#/schedules"; route(); $("main").focus(); }
    });
    window.addEventListener("hashchange", () => { route(); });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved && await signIn(saved)) route();
    else signOut("");
  });
})();
