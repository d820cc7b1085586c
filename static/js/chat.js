/* NanoSentri — chat page: the /ws/chat/ protocol of docs/protocol.md.
 *
 * Safety rule: everything the server or the model sends is written with textContent /
 * text nodes. The exceptions are the `html` the server renders: of a `done` frame (from
 * markdown, sanitized), and of the `live_context`, `similar_incidents` and `route` frames (the
 * page's own autoescaped partials); only these go through innerHTML.
 *
 * An answer card reads top to bottom: the manual's own sentences (`extract`), live context,
 * the cited passages, similar incidents, then the model's text under "Assistant's note".
 */
(function () {
  "use strict";

  var main = document.getElementById("main");
  var transcript = document.getElementById("transcript");
  var form = document.getElementById("ask-form");
  var textarea = document.getElementById("question");
  var assetSelect = document.getElementById("asset");
  var contextInput = document.getElementById("context");
  var localOnly = document.getElementById("local-only"); // only when a site model server is configured
  var askButton = document.getElementById("ask");
  var stopButton = document.getElementById("stop");
  var queueStatus = document.getElementById("queue-status");
  var connectionStatus = document.getElementById("connection-status");
  var emptyState = document.getElementById("empty-state");
  var conversationList = document.getElementById("conversation-list");
  if (!main || !transcript || !form || !textarea || !askButton || !stopButton) return;

  var chatUrl = main.getAttribute("data-chat-url") || "/chat/";
  if (chatUrl.charAt(chatUrl.length - 1) !== "/") chatUrl += "/";
  var loginUrl = main.getAttribute("data-login-url") || "/login/";

  var STATUS_LABELS = {
    completed: "completed",
    not_covered: "not covered by the manuals",
    stopped: "stopped",
    failed: "failed",
    interrupted: "interrupted"
  };

  var socket = null; // NanoSentriSocket (static/js/socket.js)
  var connected = false; // the server sent `ready`
  var conversationId = parseConversation(main.getAttribute("data-conversation"));
  var live = null; // the answer being streamed: {el, extract, answer, citations, status, timings, message, gotToken}
  var NARRATIVE_TITLE = "Assistant's note — check against the manual";

  function parseConversation(value) {
    var n = parseInt(value, 10);
    return isNaN(n) ? null : n;
  }

  /* ------------------------------------------------------------------ DOM helpers */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function scrollToBottom() {
    transcript.scrollTop = transcript.scrollHeight;
  }

  function nearBottom() {
    return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
  }

  function setQueueStatus(text) {
    if (!queueStatus) return;
    queueStatus.textContent = text || "";
    queueStatus.hidden = !text;
  }

  function setConnectionStatus(text, kind) {
    if (!connectionStatus) return;
    connectionStatus.textContent = "";
    connectionStatus.className = "connection-status" + (kind ? " connection-" + kind : "");
    if (text && typeof text === "object") connectionStatus.appendChild(text);
    else connectionStatus.textContent = text || "";
    connectionStatus.hidden = !text;
  }

  function updateButtons() {
    var streaming = live !== null;
    askButton.disabled = !connected || streaming;
    stopButton.disabled = !streaming || !connected || (live && live.stopping);
    main.classList.toggle("is-streaming", streaming);
  }

  function showError(detail, container) {
    var box = el("div", "error", detail || "Something went wrong.");
    box.setAttribute("role", "alert");
    var parent = container || transcript;
    var meta = parent.querySelector(":scope > .answer-meta");
    if (meta) parent.insertBefore(box, meta);
    else parent.appendChild(box);
    scrollToBottom();
    return box;
  }

  /* ------------------------------------------------------------------ messages */

  // Only the answer being streamed owns the ids cite-1…cite-N (the `[n]` links of its
  // html point there); earlier live answers get ids scoped by their message id.
  function retireLiveCitationIds() {
    var items = transcript.querySelectorAll(".msg-assistant[data-live-ids] .citation");
    for (var i = 0; i < items.length; i++) {
      var msg = items[i].closest(".msg-assistant");
      var key = msg.getAttribute("data-message") || "x" + i;
      items[i].id = "cite-" + key + "-" + items[i].getAttribute("data-n");
    }
    var marked = transcript.querySelectorAll(".msg-assistant[data-live-ids]");
    for (var j = 0; j < marked.length; j++) {
      var key2 = marked[j].getAttribute("data-message");
      var links = marked[j].querySelectorAll('.answer a[href^="#cite-"], .extract a[href^="#cite-"]');
      for (var k = 0; k < links.length; k++) {
        var n = links[k].getAttribute("href").slice("#cite-".length);
        if (/^\d+$/.test(n) && key2) links[k].setAttribute("href", "#cite-" + key2 + "-" + n);
      }
      marked[j].removeAttribute("data-live-ids");
    }
  }

  function addUserMessage(question) {
    var wrap = el("div", "msg msg-user");
    wrap.appendChild(el("div", "bubble question", question));
    transcript.appendChild(wrap);
    return wrap;
  }

  function addAssistantMessage() {
    var article = el("article", "msg msg-assistant streaming");
    article.setAttribute("data-status", "pending");
    article.setAttribute("data-live-ids", "");

    var citations = el("section", "citations pending");
    citations.setAttribute("aria-label", "Evidence from the manuals");
    citations.appendChild(el("h3", "citations-title", "Evidence from the manuals"));
    citations.appendChild(el("p", "citations-loading muted", "Searching the manuals…"));

    // The manual's own sentences come first; hidden until an `extract` frame has some.
    var extract = el("section", "extract");
    extract.setAttribute("aria-label", "From the manual");
    extract.hidden = true;

    var narrativeTitle = el("h3", "narrative-title", NARRATIVE_TITLE);
    var answer = el("div", "answer answer-text");
    var legend = ungroundedLegend();
    legend.hidden = true;
    var meta = el("footer", "answer-meta");
    var status = el("span", "answer-status");
    status.hidden = true;
    var timings = el("span", "timings");
    timings.hidden = true;
    var route = el("span", "route");
    route.hidden = true;
    meta.appendChild(status);
    meta.appendChild(route);
    meta.appendChild(timings);

    var liveContext = el("section", "live-context");
    liveContext.setAttribute("aria-label", "Live context");
    liveContext.hidden = true;

    article.appendChild(extract);
    article.appendChild(liveContext);
    article.appendChild(citations);
    article.appendChild(narrativeTitle);
    article.appendChild(answer);
    article.appendChild(legend);
    article.appendChild(meta);
    transcript.appendChild(article);
    return { el: article, extract: extract, citations: citations, liveContext: liveContext,
             narrativeTitle: narrativeTitle, answer: answer, legend: legend, status: status, timings: timings,
             route: route,
             message: null, gotToken: false, stopping: false, accepted: false, hasExtract: false };
  }

  // Same markup as templates/chat/_ungrounded_legend.html.
  function ungroundedLegend() {
    var p = el("p", "ungrounded-legend");
    p.appendChild(el("span", "ungrounded-swatch", "Highlighted"));
    p.appendChild(document.createTextNode(" items are not in the cited manuals."));
    return p;
  }

  /* The answer in the manual's own words: verbatim sentences of the cited passages, each with
   * its [n] (linked like the answer's) and where it is. Same markup as templates/chat/_extract.html. */
  function renderExtract(target, items) {
    var section = target.extract;
    while (section.firstChild) section.removeChild(section.firstChild);
    target.hasExtract = !!(items && items.length);
    section.hidden = !target.hasExtract;
    if (!target.hasExtract) return;
    section.appendChild(el("h3", "extract-title", "From the manual"));
    var list = el("ul", "extract-list");
    items.forEach(function (item) {
      var li = el("li", "extract-item");
      li.appendChild(el("q", "extract-text", item.text || ""));
      var n = parseInt(item.n, 10);
      if (!isNaN(n)) {
        var cite = el("a", "cite", "[" + n + "]");
        cite.href = "#cite-" + n;
        li.appendChild(document.createTextNode(" "));
        li.appendChild(cite);
      }
      if (item.document) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", "extract-source", item.document + (item.page ? ", p. " + item.page : "")));
      }
      list.appendChild(li);
    });
    section.appendChild(list);
  }

  function renderCitations(target, items) {
    var section = target.citations;
    section.classList.remove("pending");
    var loading = section.querySelector(".citations-loading");
    if (loading) loading.remove();
    var old = section.querySelector(".citation-list, .no-evidence");
    if (old) old.remove();

    if (!items || !items.length) {
      section.appendChild(el("p", "no-evidence", "No relevant passage in the manuals."));
      return;
    }
    var list = el("ol", "citation-list");
    items.forEach(function (item) {
      var n = item.n;
      var li = el("li", "citation");
      li.id = "cite-" + n;
      li.setAttribute("data-n", String(n));

      var head = el("div", "citation-head");
      var label = "[" + n + "] " + (item.document || "document") + " — page " + item.page;
      var link;
      if (item.url && /^(\/|https?:)/i.test(item.url)) { // our own /documents/<id>/file/#page=N
        link = el("a", "citation-link", label);
        link.href = item.url;
        link.target = "_blank";
        link.rel = "noopener";
      } else {
        link = el("span", "citation-link", label);
      }
      head.appendChild(link);
      if (typeof item.score === "number") {
        var score = el("span", "score", "score " + item.score.toFixed(2));
        score.title = "Similarity score";
        head.appendChild(score);
      }
      if (typeof item.boost === "number" && item.boost > 0) head.appendChild(boostBadge());
      if (item.source === "ocr") {
        var ocr = el("span", "ocr-badge", "OCR");
        ocr.title = "Read by OCR from a scanned page: check the words against the page";
        head.appendChild(ocr);
      }
      li.appendChild(head);

      if (item.highlights && item.highlights.length) {
        var quote = el("blockquote", "key-lines");
        item.highlights.forEach(function (line) { quote.appendChild(el("p", null, line)); });
        li.appendChild(quote);
      }

      var details = el("details", "passage");
      details.appendChild(el("summary", null, "Show passage"));
      details.appendChild(el("p", "passage-text", item.text || ""));
      li.appendChild(details);
      list.appendChild(li);
    });
    section.appendChild(list);
  }

  /* Evidence the server rendered with the partials of stored answers (templates/chat/
   * _live_context.html, _similar_incidents.html, autoescaped there): one markup for both. */
  function fragment(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html || "";
    return holder.content.firstElementChild;
  }

  /* Sensor readings and diagnostic findings: shown before the model's first token. */
  function renderLiveContext(target, frame) {
    var section = fragment(frame.html);
    if (!section) return;
    target.liveContext.replaceWith(section);
    target.liveContext = section;
  }

  /* Similar past incidents: resolved incidents like this question, shown before the model's
   * first token, after the citations. */
  function renderSimilarIncidents(target, frame) {
    var old = target.el.querySelector(":scope > .similar-incidents");
    if (old) old.remove();
    var section = fragment(frame.html);
    if (section) target.citations.parentNode.insertBefore(section, target.citations.nextSibling);
  }

  function formatTimings(t) {
    if (!t) return "";
    var parts = [];
    if (typeof t.ttft_ms === "number") parts.push("first token " + Math.round(t.ttft_ms) + " ms");
    if (typeof t.tokens_per_s === "number") parts.push(Math.round(t.tokens_per_s) + " tok/s");
    return parts.join(" · ");
  }

  function setAnswerStatus(target, status) {
    target.el.setAttribute("data-status", status);
    target.status.className = "answer-status status-" + status;
    if (status === "completed") {
      target.status.textContent = "";
      target.status.hidden = true;
    } else {
      target.status.textContent = STATUS_LABELS[status] || status;
      target.status.hidden = false;
    }
  }

  function finishLive() {
    if (live) {
      live.el.classList.remove("streaming");
    }
    live = null;
    setQueueStatus("");
    updateButtons();
  }

  /* ------------------------------------------------------------------ frames */

  function onAccepted(frame) {
    if (!live) return;
    live.accepted = true;
    live.message = frame.message;
    live.el.setAttribute("data-message", String(frame.message));
    var isNew = conversationId !== frame.conversation;
    conversationId = frame.conversation;
    main.setAttribute("data-conversation", String(conversationId));
    var url = chatUrl + conversationId + "/";
    if (window.location.pathname !== url) {
      try {
        window.history.replaceState({ conversation: conversationId }, "", url);
      } catch (e) { /* file:// or similar: keep the URL */ }
    }
    if (isNew) addConversationLink(conversationId, live.question);
    showIncidentLinks(conversationId, null, null);
  }

  /* "Open incident" links (incidents app): for the conversation, and under each stored answer.
   * Only on the page when the user may open incidents (#incident-bar). */
  function showIncidentLinks(conversation, message, article) {
    var bar = document.getElementById("incident-bar");
    var link = document.getElementById("open-incident");
    if (!bar || !link) return;
    var base = bar.getAttribute("data-new-url") || "/incidents/new/";
    if (conversation !== null) {
      link.href = base + "?conversation=" + encodeURIComponent(conversation);
      bar.hidden = false;
    }
    var meta = article && message !== null && message !== undefined ? article.querySelector(".answer-meta") : null;
    if (meta && !meta.querySelector(".open-incident")) {
      var a = el("a", "open-incident small", "Open incident");
      a.href = base + "?message=" + encodeURIComponent(message);
      meta.appendChild(a);
    }
  }

  function addConversationLink(id, title) {
    if (!conversationList) return;
    var existing = conversationList.querySelector('[data-conversation-id="' + id + '"]');
    var links = conversationList.querySelectorAll(".conversation-link");
    for (var i = 0; i < links.length; i++) {
      links[i].classList.remove("active");
      links[i].removeAttribute("aria-current");
    }
    if (existing) {
      existing.classList.add("active");
      existing.setAttribute("aria-current", "page");
      return;
    }
    var empty = conversationList.querySelector(".conversation-empty");
    if (empty) empty.remove();
    var li = el("li");
    var a = el("a", "conversation-link active");
    a.href = chatUrl + id + "/";
    a.setAttribute("data-conversation-id", String(id));
    a.setAttribute("aria-current", "page");
    a.appendChild(el("span", "conversation-title", (title || "Conversation").slice(0, 200)));
    a.appendChild(el("time", "conversation-date", "just now"));
    li.appendChild(a);
    conversationList.insertBefore(li, conversationList.firstChild);
  }

  function onToken(frame) {
    if (!live) return;
    var stick = nearBottom();
    if (!live.gotToken) {
      live.gotToken = true;
      setQueueStatus(live.stopping ? "Stopping…" : "");
      live.el.setAttribute("data-status", "streaming");
    }
    live.answer.appendChild(document.createTextNode(typeof frame.text === "string" ? frame.text : ""));
    if (stick) scrollToBottom();
  }

  /* Which model answers and why: the server's badge (templates/chat/_route_badge.html). When the
   * site model server failed mid-answer (`restart`), its text is void: the local model answers afresh. */
  function onRoute(frame) {
    if (!live) return;
    var badge = fragment(frame.html);
    if (badge) {
      live.route.replaceWith(badge);
      live.route = badge;
    }
    if (frame.restart) {
      live.answer.textContent = "";
      live.gotToken = false;
    }
    if (!live.gotToken && !live.stopping) {
      setQueueStatus(frame.via === "site" ? "Asking the site model server…" : "Asking the model on this device…");
    }
  }

  function onDone(frame) {
    if (!live) return;
    var target = live;
    // The server sanitized this HTML (markdown → nh3): see the safety rule at the top.
    target.answer.innerHTML = typeof frame.html === "string" ? frame.html : "";
    target.answer.classList.add("rendered");
    if (!target.answer.textContent.trim()) {
      target.answer.textContent = "";
      if (target.hasExtract && (frame.status || "completed") === "completed") {
        // The model's narrative is off: the extract is the whole answer, no empty "note".
        target.narrativeTitle.hidden = true;
        target.answer.hidden = true;
      } else {
        target.answer.appendChild(el("p", "muted", frame.status === "stopped"
          ? "Stopped before the model wrote anything."
          : "No answer was written."));
      }
    }
    target.legend.hidden = !target.answer.querySelector("mark.ungrounded");
    setAnswerStatus(target, frame.status || "completed");
    var text = formatTimings(frame.timings);
    target.timings.textContent = text;
    target.timings.hidden = !text;
    addFeedbackControls(target.el, frame);
    if (target.accepted) showIncidentLinks(conversationId, target.message, target.el);
    finishLive();
  }

  function onError(frame) {
    var detail = frame.detail || frame.code || "error";
    if (frame.code === "busy" && live) {
      showError(detail, live.el);
      return;
    }
    if (live && (frame.message === undefined || frame.message === null)) {
      // Not tied to an answer: the ask was refused (or the pipeline crashed); no `done` follows.
      showError(detail, live.accepted ? live.el : transcript);
      if (!live.accepted) {
        // Nothing was stored: take the placeholder answer away and give the question back.
        live.el.remove();
        if (!textarea.value) textarea.value = live.question || "";
      } else {
        setAnswerStatus(live, "failed");
      }
      if (frame.code === "unknown_conversation") {
        conversationId = null;
        main.setAttribute("data-conversation", "");
      }
      finishLive();
      return;
    }
    // Tied to the current answer: `done` follows.
    showError(detail, live ? live.el : transcript);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "ready":
        connected = true;
        setConnectionStatus("");
        updateButtons();
        break;
      case "accepted":
        onAccepted(frame);
        break;
      case "citations":
        if (live) {
          renderCitations(live, frame.items);
          if (!live.gotToken) setQueueStatus("Evidence found — asking the model…");
          scrollToBottom();
        }
        break;
      case "extract": if (live) renderExtract(live, frame.items); break;
      case "similar_incidents": if (live) renderSimilarIncidents(live, frame); break;
      case "live_context":
        if (live) {
          renderLiveContext(live, frame);
          scrollToBottom();
        }
        break;
      case "queued":
        if (live && !live.gotToken) {
          var n = frame.position;
          setQueueStatus("Waiting for the model — " + n + " ahead of you");
        }
        break;
      case "route":
        onRoute(frame);
        break;
      case "token":
        onToken(frame);
        break;
      case "done":
        onDone(frame);
        break;
      case "error":
        onError(frame);
        break;
      case "pong":
      default:
        break;
    }
  }

  /* ------------------------------------------------------------------ actions */

  function ask() {
    var question = textarea.value.trim();
    if (!question || !connected || live || !socket || !socket.isOpen()) return;
    if (emptyState) emptyState.hidden = true;
    retireLiveCitationIds();
    addUserMessage(question);
    live = addAssistantMessage();
    live.question = question;
    setQueueStatus("Searching the manuals…");
    var frame = { type: "ask", question: question };
    if (conversationId !== null) frame.conversation = conversationId;
    if (assetSelect && assetSelect.value) frame.asset = assetSelect.value;
    if (contextInput && contextInput.value.trim()) frame.context = contextInput.value.trim();
    if (localOnly) frame.local_only = localOnly.checked;
    socket.send(frame);
    textarea.value = "";
    updateButtons();
    scrollToBottom();
  }

  function stop() {
    if (!live || !socket || !socket.isOpen()) return;
    socket.send({ type: "stop" });
    live.stopping = true;
    setQueueStatus("Stopping…");
    updateButtons();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    ask();
  });

  textarea.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!askButton.disabled) ask();
    }
  });

  stopButton.addEventListener("click", function (event) {
    event.preventDefault();
    stop();
  });

  // [n] links in an answer: open the matching citation of the same message.
  transcript.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest('a[href^="#cite-"]') : null;
    if (!link) return;
    var msg = link.closest(".msg-assistant");
    var m = /(\d+)$/.exec(link.getAttribute("href"));
    if (!msg || !m) return;
    var item = msg.querySelector('.citation[data-n="' + m[1] + '"]');
    if (!item) return;
    event.preventDefault();
    var details = item.querySelector("details");
    if (details) details.open = true;
    item.scrollIntoView({ behavior: "smooth", block: "center" });
    item.classList.remove("flash-highlight");
    void item.offsetWidth; // restart the highlight animation
    item.classList.add("flash-highlight");
  });

  /* ------------------------------------------------------------------ feedback */
  // Thumbs up / down and a comment on each finished answer (templates/chat/_feedback.html,
  // POST /chat/messages/<id>/feedback/). Pressing the pressed thumb again takes the vote back.

  var feedbackTemplate = document.getElementById("feedback-template");
  var FEEDBACK_RATEABLE = { completed: true, not_covered: true, stopped: true };

  function boostBadge() {
    var badge = el("span", "boosted", "boosted by feedback");
    badge.title = "Ranked higher because answers to similar questions that cited it got a thumbs-up";
    return badge;
  }

  function addFeedbackControls(article, frame) {
    if (!feedbackTemplate || !feedbackTemplate.content || !frame || !frame.message) return;
    if (!FEEDBACK_RATEABLE[frame.status] || article.querySelector(".feedback")) return;
    var box = feedbackTemplate.content.querySelector(".feedback").cloneNode(true);
    var url = (feedbackTemplate.getAttribute("data-url") || "").replace(/\/0\/feedback\/$/, "/" + frame.message + "/feedback/");
    box.setAttribute("data-feedback-url", url);
    article.appendChild(box);
  }

  function feedbackStatus(box, text, isError) {
    var status = box.querySelector(".feedback-status");
    if (!status) return;
    status.textContent = text || "";
    status.classList.toggle("is-error", !!isError);
  }

  function feedbackApply(box, state) {
    var rating = state.rating || "";
    box.setAttribute("data-rating", rating);
    var buttons = box.querySelectorAll(".feedback-btn");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute("aria-pressed", buttons[i].getAttribute("data-rating") === rating ? "true" : "false");
    }
    var summary = box.querySelector(".feedback-comment summary");
    if (summary) summary.textContent = rating && state.comment ? "Your comment" : "Add a comment";
    // Taking a vote back leaves whatever is typed in the box, so nothing is lost.
    feedbackStatus(box, rating === "up" ? "Thanks — marked helpful." : rating === "down"
      ? "Thanks — a supervisor will look at it." : "Vote removed.");
  }

  function feedbackSend(box, rating) {
    var url = box.getAttribute("data-feedback-url");
    var textarea = box.querySelector("textarea");
    if (!url || !window.fetch || box.getAttribute("aria-busy") === "true") return;
    var csrf = feedbackTemplate ? feedbackTemplate.getAttribute("data-csrf") : "";
    box.setAttribute("aria-busy", "true");
    var controls = box.querySelectorAll("button");
    for (var i = 0; i < controls.length; i++) controls[i].disabled = true;
    function settle() {
      box.removeAttribute("aria-busy");
      for (var j = 0; j < controls.length; j++) controls[j].disabled = false;
    }
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf || "" },
      body: JSON.stringify({ rating: rating, comment: textarea ? textarea.value : "" })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        settle();
        if (response.ok) { feedbackApply(box, data); return; }
        var detail = data.error || (response.status === 403
          ? "Not saved: not allowed, or the page is out of date (reload it)."
          : "Not saved (error " + response.status + ").");
        feedbackStatus(box, detail, true);
      });
    }).catch(function () {
      settle();
      feedbackStatus(box, "Not saved: the server cannot be reached. Try again.", true);
    });
  }

  transcript.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".feedback-btn") : null;
    if (!button) return;
    var box = button.closest(".feedback");
    var rating = button.getAttribute("data-rating");
    var current = box.getAttribute("data-rating") || "";
    if (rating === "down" && current !== "down") {
      var details = box.querySelector(".feedback-comment");
      if (details) details.open = true; // invite a word on what was wrong
    }
    feedbackSend(box, rating === current ? "none" : rating);
  });

  transcript.addEventListener("submit", function (event) {
    var formEl = event.target.closest ? event.target.closest(".feedback-form") : null;
    if (!formEl) return;
    event.preventDefault();
    var box = formEl.closest(".feedback");
    var rating = box.getAttribute("data-rating");
    if (!rating) {
      feedbackStatus(box, "Choose Helpful or Not helpful first, then save the comment.", true);
      return;
    }
    feedbackSend(box, rating);
  });

  /* ------------------------------------------------------------------ connection */

  function onClose() {
    connected = false;
    if (live) {
      // Closing the socket stops the answer on the server; the partial text is kept there.
      showError("Connection lost — the answer was interrupted. Reload the conversation to see what was saved.", live.el);
      setAnswerStatus(live, "interrupted");
      finishLive();
    }
    updateButtons();
  }

  function showSignedOut() {
    var note = document.createElement("span");
    note.appendChild(document.createTextNode("You are signed out or not allowed to chat. "));
    var a = el("a", null, "Log in again");
    a.href = loginUrl + "?next=" + encodeURIComponent(window.location.pathname);
    note.appendChild(a);
    setConnectionStatus(note, "error");
  }

  updateButtons();
  socket = window.NanoSentriSocket({
    path: "/ws/chat/",
    onFrame: onFrame,
    onClose: onClose,
    onSignedOut: showSignedOut,
    onRetry: function () { setConnectionStatus("Offline — reconnecting…", "offline"); }
  });
  scrollToBottom();
  // Do not pop the on-screen keyboard up on tablets.
  if (window.matchMedia && window.matchMedia("(pointer: fine)").matches) textarea.focus();
})();
