/* NanoSentri — documents page: live ingest progress over /ws/documents/.
 *
 * Frames: {"type": "document", "document": {id, name, status, status_label, error, pages,
 * pages_done, chunks, chunks_done, chunks_total, percent, updated}}.
 * Server-supplied strings are always written with textContent. The only HTML inserted is the
 * row partial fetched from our own server (/documents/<id>/row/), which Django escaped.
 */
(function () {
  "use strict";

  var table = document.getElementById("documents-table");
  var body = document.getElementById("documents-body");
  if (!table || !body) return;

  var liveState = document.getElementById("live-state");
  var rowUrlTemplate = table.getAttribute("data-row-url") || "/documents/0/row/";
  var IN_PROGRESS = { queued: true, parsing: true, ocr: true, embedding: true };

  var pendingFetch = {}; // id -> latest payload received while the row is being fetched
  var everConnected = false;

  function setLive(state, text) {
    if (!liveState) return;
    liveState.setAttribute("data-state", state);
    liveState.textContent = text;
  }

  function rowUrl(id) {
    return rowUrlTemplate.replace(/\/0\/row\/$/, "/" + encodeURIComponent(id) + "/row/");
  }

  function role(row, name) {
    return row.querySelector('[data-role="' + name + '"]');
  }

  function dash(value) {
    return value === null || value === undefined ? "—" : String(value);
  }

  function progressText(d) {
    if (d.status === "queued") return d.cancel_requested ? "cancelling…" : "waiting for the worker";
    if (!IN_PROGRESS[d.status]) return "";
    var pagesTotal = d.pages === null || d.pages === undefined ? "?" : d.pages;
    var text = "page " + (d.pages_done || 0) + " of " + pagesTotal + " · " + (d.chunks_done || 0) + " chunks";
    if (d.status === "ocr") text += " · reading a scanned page";
    if (d.cancel_requested) text += " · cancelling…";
    return text;
  }

  function updateEmptyState() {
    var empty = document.getElementById("documents-empty");
    if (!empty) return;
    empty.hidden = body.querySelector("tr.doc-row") !== null;
  }

  function applyPayload(row, d) {
    var previous = row.getAttribute("data-status");
    if (d.status === "superseded") {
      // Replaced by a newer version: it is listed under that version's row from now on.
      row.remove();
      updateEmptyState();
      return;
    }
    row.setAttribute("data-status", d.status);

    var status = role(row, "status");
    if (status) {
      status.className = "status status-" + d.status;
      status.textContent = d.status_label || d.status;
    }
    var progress = role(row, "progress");
    if (progress) {
      var pct = Math.max(0, Math.min(100, Number(d.percent) || 0));
      progress.value = pct;
      progress.textContent = pct + "%";
    }
    var text = role(row, "progress-text");
    if (text) text.textContent = progressText(d);
    var pages = role(row, "pages");
    if (pages) pages.textContent = dash(d.pages);
    var chunks = role(row, "chunks");
    if (chunks) chunks.textContent = dash(d.chunks);
    var error = role(row, "error");
    if (error) {
      error.textContent = d.error || "";
      error.hidden = !d.error;
    }
    if (d.status !== "indexed") {
      var emptyPages = role(row, "empty-pages");
      if (emptyPages) emptyPages.remove();
    }
    // Finished: re-read the row once from the server for what frames do not carry
    // (pages without text, etc.).
    if (previous && IN_PROGRESS[previous] !== IN_PROGRESS[d.status]) {
      fetchRow(d.id, d, true);
    }
  }

  function fetchRow(id, payload, replace) {
    if (Object.prototype.hasOwnProperty.call(pendingFetch, id)) {
      pendingFetch[id] = payload;
      return;
    }
    pendingFetch[id] = payload;
    fetch(rowUrl(id), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var latest = pendingFetch[id];
        delete pendingFetch[id];
        // Parse inside a <tbody> so the <tr> survives; the partial is our own escaped HTML.
        var holder = document.createElement("tbody");
        holder.innerHTML = html.trim();
        var fresh = holder.querySelector("tr.doc-row");
        if (!fresh) return;
        var existing = document.getElementById("doc-" + id);
        if (existing) {
          if (!replace) return; // a frame created it meanwhile
          existing.replaceWith(fresh);
        } else if (replace) {
          return; // deleted meanwhile
        } else {
          body.insertBefore(fresh, body.firstChild);
        }
        // A frame newer than the render may have arrived while we waited.
        if (latest && latest !== payload) applyPayload(fresh, latest);
        updateEmptyState();
      })
      .catch(function () {
        delete pendingFetch[id];
      });
  }

  function onDocument(d) {
    if (!d || d.id === undefined || d.id === null) return;
    var row = document.getElementById("doc-" + d.id);
    if (row) {
      if (Object.prototype.hasOwnProperty.call(pendingFetch, d.id)) pendingFetch[d.id] = d;
      applyPayload(row, d);
    } else {
      fetchRow(d.id, d, false); // another admin uploaded it: get the full row
    }
  }

  function refreshInProgress() {
    var rows = body.querySelectorAll("tr.doc-row");
    for (var i = 0; i < rows.length; i++) {
      if (IN_PROGRESS[rows[i].getAttribute("data-status")]) {
        fetchRow(rows[i].getAttribute("data-id"), null, true);
      }
    }
  }

  updateEmptyState();
  window.NanoSentriSocket({
    path: "/ws/documents/",
    maxDelayMs: 30000,
    onConnecting: function () { setLive("connecting", "connecting…"); },
    onOpen: function () {
      setLive("live", "live");
      if (everConnected) refreshInProgress(); // what moved while we were offline
      everConnected = true;
    },
    onFrame: function (frame) { if (frame.type === "document") onDocument(frame.document); },
    onSignedOut: function () { setLive("offline", "signed out — reload the page"); },
    onRetry: function () { setLive("offline", "offline — reconnecting…"); }
  });
})();
