/* NanoSentri — alert toasts on every page (for signed-in users with a role).
 *
 * /ws/alerts/ sends {"type": "ready", "last_alert": id} once, then
 * {"type": "alert", "alert": {id, asset, severity, message, url, ...}} when a high-severity
 * finding appears on an asset. A toast links to the asset and stays until dismissed, also
 * across page loads (sessionStorage). The newest alert id known is passed as ?after= so an
 * alert opened while the browser was changing pages is caught up. textContent only.
 */
(function () {
  "use strict";

  var box = document.getElementById("alert-toasts");
  if (!box || !window.WebSocket || !window.NanoSentriSocket) return;

  var STORE_KEY = "nanosentri.alerts";
  var MAX_SHOWN = 4;
  var MAX_SEEN = 100;
  var MAX_MESSAGE = 140;
  var state = load(); // {lastId: number|null, seen: [ids], open: [alerts, oldest first]}

  function load() {
    try {
      var stored = JSON.parse(window.sessionStorage.getItem(STORE_KEY));
      if (stored && Array.isArray(stored.seen) && Array.isArray(stored.open)) return stored;
    } catch (e) {
      /* storage disabled or garbled: start afresh */
    }
    return { lastId: null, seen: [], open: [] };
  }

  function save() {
    try {
      window.sessionStorage.setItem(STORE_KEY, JSON.stringify(state));
    } catch (e) {
      /* private mode: toasts just do not survive a page change */
    }
  }

  function capitalise(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  function shorten(text) {
    text = String(text || "").replace(/\s+/g, " ").trim();
    return text.length > MAX_MESSAGE ? text.slice(0, MAX_MESSAGE - 1).trimEnd() + "…" : text;
  }

  function assetUrl(a) {
    // Only ever a path of ours: never a script: URL or another origin.
    if (typeof a.url === "string" && /^\/assets\/[^\/?#]+\/$/.test(a.url)) return a.url;
    return "/assets/" + encodeURIComponent(String(a.asset || "")) + "/";
  }

  function severityClass(severity) {
    return /^[a-z]+$/.test(severity || "") ? severity : "high";
  }

  function findToast(id) {
    var toasts = box.querySelectorAll(".toast");
    for (var i = 0; i < toasts.length; i++) {
      if (toasts[i].getAttribute("data-alert") === String(id)) return toasts[i];
    }
    return null;
  }

  function dismiss(id) {
    state.open = state.open.filter(function (a) { return a.id !== id; });
    save();
    var toast = findToast(id);
    if (toast) toast.remove();
  }

  function render(a) {
    var toast = document.createElement("div");
    toast.className = "toast toast-" + severityClass(a.severity);
    toast.setAttribute("data-alert", String(a.id));
    var link = document.createElement("a");
    link.className = "toast-link";
    link.href = assetUrl(a);
    var sev = document.createElement("strong");
    sev.textContent = capitalise(severityClass(a.severity)) + ": ";
    link.appendChild(sev);
    link.appendChild(document.createTextNode(shorten(a.message) + " — open " + String(a.asset || "the asset")));
    link.addEventListener("click", function () { dismiss(a.id); }); // followed: done with it
    toast.appendChild(link);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss alert");
    close.textContent = "×";
    close.addEventListener("click", function () { dismiss(a.id); });
    toast.appendChild(close);
    box.insertBefore(toast, box.firstChild); // newest on top
  }

  function show(a) {
    if (!a || a.id === null || a.id === undefined || state.seen.indexOf(a.id) !== -1) return;
    state.seen.push(a.id);
    if (state.seen.length > MAX_SEEN) state.seen = state.seen.slice(-MAX_SEEN);
    if (state.lastId === null || a.id > state.lastId) state.lastId = a.id;
    state.open.push(a);
    while (state.open.length > MAX_SHOWN) {
      var oldest = state.open.shift();
      var gone = findToast(oldest.id);
      if (gone) gone.remove();
    }
    save();
    render(a);
  }

  function onReady(lastAlert) {
    var last = typeof lastAlert === "number" ? lastAlert : 0;
    // First page of the session, or a database newer than what we remember (reset): start here.
    if (state.lastId === null || last < state.lastId) {
      state.lastId = last;
      save();
    }
  }

  state.open.forEach(render);
  window.NanoSentriSocket({
    path: function () { // read at each (re)connect: the newest alert known by then
      return "/ws/alerts/" + (state.lastId !== null ? "?after=" + encodeURIComponent(state.lastId) : "");
    },
    maxDelayMs: 30000,
    jitterMs: 500,
    probeSession: false, // on every page: a signed-out page has no toasts to keep alive anyway
    onFrame: function (frame) {
      if (frame.type === "ready") onReady(frame.last_alert);
      else if (frame.type === "alert") show(frame.alert);
    }
  });
})();
