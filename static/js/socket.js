/* NanoSentri — the websocket of a page: open, JSON frames, close, reconnect with backoff.
 *
 * Shared by chat.js, documents.js and alerts.js (loaded before them by base.html):
 *
 *   var socket = NanoSentriSocket({
 *     path: "/ws/chat/",            // or a function returning path and query, read at each (re)connect
 *     onFrame: function (frame) {}, // each JSON object the server sends
 *     onConnecting, onOpen,         // optional: each attempt starts / the socket opened
 *     onClose(event),               // optional: the socket closed (before any retry)
 *     onSignedOut,                  // optional: closed with 4403, or refused while the session is gone
 *     onRetry(delayMs),             // optional: a reconnect is scheduled
 *     probeSession: true,           // a refused handshake: ask the page (HEAD) whether we are signed out
 *     maxDelayMs: 20000, jitterMs: 300
 *   });
 *   socket.send({type: "ping"}); socket.isOpen();
 *
 * Retries wait 1 s, then twice as long each time up to maxDelayMs (plus jitter so that many pages do
 * not come back at once); a socket that opened resets the wait. A 4403 close (signed out, or no
 * role for this socket) is final.
 */
(function () {
  "use strict";

  var FIRST_DELAY = 1000;
  var SIGNED_OUT = 4403;

  function noop() {}

  window.NanoSentriSocket = function (options) {
    var onFrame = options.onFrame || noop;
    var onConnecting = options.onConnecting || noop;
    var onOpen = options.onOpen || noop;
    var onClose = options.onClose || noop;
    var onSignedOut = options.onSignedOut || noop;
    var onRetry = options.onRetry || noop;
    var jitter = options.jitterMs === undefined ? 300 : options.jitterMs;
    var maxDelay = options.maxDelayMs || 20000;
    var socket = null;
    var retryDelay = FIRST_DELAY;
    var timer = null;

    function url() {
      var path = typeof options.path === "function" ? options.path() : options.path;
      var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + window.location.host + path;
    }

    function connect() {
      timer = null;
      onConnecting();
      try {
        socket = new WebSocket(url());
      } catch (e) {
        retry();
        return;
      }
      var opened = false;
      socket.addEventListener("open", function () {
        opened = true;
        retryDelay = FIRST_DELAY;
        onOpen();
      });
      socket.addEventListener("message", function (event) {
        var frame;
        try {
          frame = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        if (frame && typeof frame.type === "string") onFrame(frame);
      });
      socket.addEventListener("close", function (event) {
        socket = null;
        onClose(event);
        if (event.code === SIGNED_OUT) {
          onSignedOut();
          return;
        }
        if (!opened && options.probeSession !== false && window.fetch) {
          probeSession();
          return;
        }
        retry();
      });
    }

    // A refused handshake looks like a network error (1006): is the session gone?
    function probeSession() {
      fetch(window.location.pathname, { method: "HEAD", credentials: "same-origin", redirect: "manual", cache: "no-store" })
        .then(function (response) {
          if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) onSignedOut();
          else retry();
        })
        .catch(function () { retry(); }); // the server is down: keep trying
    }

    function retry() {
      if (timer) return;
      var delay = retryDelay;
      retryDelay = Math.min(maxDelay, retryDelay * 2);
      onRetry(delay);
      timer = window.setTimeout(connect, delay + Math.floor(Math.random() * jitter));
    }

    connect();
    return {
      isOpen: function () { return !!socket && socket.readyState === WebSocket.OPEN; },
      send: function (frame) {
        if (!socket || socket.readyState !== WebSocket.OPEN) return false;
        socket.send(JSON.stringify(frame));
        return true;
      }
    };
  };
})();
