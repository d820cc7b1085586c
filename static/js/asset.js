/* NanoSentri — asset page: live readings, findings and one chart per numeric sensor.
 *
 * Polls live.json?since=<cursor> every 3 s (paused while the tab is hidden): simple, and the
 * same on every backend. A response is {now_ms, cursor, readings: {KEY: [[ms, value], ...]},
 * latest: {KEY: {shown, text, ts_display, state, finding, pos, summary}}, findings: [...],
 * open_alerts}. Range-bar positions and states come computed from the server.
 * Charts are inline SVG drawn here; server strings are only ever written with textContent.
 */
(function () {
  "use strict";

  var page = document.querySelector(".asset-page");
  if (!page) return;

  var SVG = "http://www.w3.org/2000/svg";
  var POLL_MS = 3000;
  var MAX_DELAY = 30000;
  var CHART_HEIGHT = 170;
  var MARGIN = { left: 48, right: 12, top: 10, bottom: 24 };

  var liveUrl = page.getAttribute("data-live-url");
  var cursor = page.getAttribute("data-cursor") || "";
  var hours = Number(page.getAttribute("data-hours")) || 6;
  var windowMs = hours * 3600 * 1000;
  // Charts end at the server's "now", not the tablet's clock.
  var clockSkew = (Number(page.getAttribute("data-now")) || Date.now()) - Date.now();
  var timeFormat = makeTimeFormat(page.getAttribute("data-tz"), hours);
  var liveState = document.getElementById("live-state");

  var series = {}; // key -> {key, unit, min, max, warn_low, warn_high, points: [[ms, value], ...]}
  var plots = {}; // key -> the chart's plot element
  var readingRows = {}; // key -> <tr> of the readings table
  var statusItems = {}; // key -> <li> of the status list
  var lastFindings = null; // JSON of the findings shown, so an unchanged list is not re-announced
  var delay = POLL_MS;
  var timer = null;
  var inFlight = false;
  var stopped = false;

  // ------------------------------------------------------------------ helpers

  function makeTimeFormat(tz, h) {
    var options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (h >= 24) {
      options.month = "2-digit";
      options.day = "2-digit";
    }
    try {
      if (tz) options.timeZone = tz;
      return new Intl.DateTimeFormat(undefined, options);
    } catch (e) {
      delete options.timeZone; // an unknown zone name: the browser's own
      return new Intl.DateTimeFormat(undefined, options);
    }
  }

  function fmt(v) {
    var a = Math.abs(v);
    var digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    return String(Number(v.toFixed(digits)));
  }

  function has(v) {
    return v !== null && v !== undefined && isFinite(v);
  }

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    if (!node) return fallback;
    try {
      return JSON.parse(node.textContent);
    } catch (e) {
      return fallback;
    }
  }

  function setLive(state, text) {
    if (!liveState) return;
    liveState.setAttribute("data-state", state);
    liveState.textContent = text;
  }

  function serverNow() {
    return Date.now() + clockSkew;
  }

  function svg(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function indexBySensor(selector, into) {
    var nodes = document.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) into[nodes[i].getAttribute("data-sensor")] = nodes[i];
  }

  // ------------------------------------------------------------------ charts

  /* The y range: the operating range and the data together, unless the data would be squashed
   * into a thin strip; then the data alone (plus a range limit close to it). */
  function yDomain(s, points) {
    var lo = Infinity;
    var hi = -Infinity;
    for (var i = 0; i < points.length; i++) {
      lo = Math.min(lo, points[i][1]);
      hi = Math.max(hi, points[i][1]);
    }
    var hasRange = has(s.min) && has(s.max) && s.max > s.min;
    if (lo === Infinity) {
      if (hasRange) return pad(s.min, s.max);
      return [0, 1];
    }
    if (hasRange) {
      var span = hi - lo;
      var withRange = [Math.min(lo, s.min), Math.max(hi, s.max)];
      if (span === 0 || span >= 0.2 * (withRange[1] - withRange[0])) {
        lo = withRange[0];
        hi = withRange[1];
      } else {
        if (lo - s.min <= span) lo = s.min;
        if (s.max - hi <= span) hi = s.max;
      }
    }
    return pad(lo, hi);
  }

  function pad(lo, hi) {
    var span = hi - lo;
    var margin = span > 0 ? span * 0.08 : Math.max(Math.abs(lo) * 0.1, 1);
    return [lo - margin, hi + margin];
  }

  function niceTicks(lo, hi) {
    // Three to six round values (1, 2, 2.5 or 5 times a power of ten apart) inside [lo, hi].
    var raw = (hi - lo) / 4;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = power;
    [1, 2, 2.5, 5, 10].some(function (m) {
      step = m * power;
      return step >= raw;
    });
    var ticks = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return ticks;
  }

  function gapLimit(points) {
    // A pause much longer than the usual interval is drawn as a gap, not a straight line.
    if (points.length < 3) return Infinity;
    var steps = [];
    for (var i = 1; i < points.length; i++) steps.push(points[i][0] - points[i - 1][0]);
    steps.sort(function (a, b) { return a - b; });
    return Math.max(15 * 60 * 1000, 5 * steps[Math.floor(steps.length / 2)]);
  }

  function state(s, v) {
    if ((has(s.min) && v < s.min) || (has(s.max) && v > s.max)) return "out";
    if ((has(s.warn_low) && v < s.warn_low) || (has(s.warn_high) && v > s.warn_high)) return "warn";
    return "ok";
  }

  function draw(key) {
    var s = series[key];
    var plot = plots[key];
    if (!s || !plot) return;
    var width = Math.max(240, plot.clientWidth || 480);
    var height = CHART_HEIGHT;
    var t1 = serverNow();
    var t0 = t1 - windowMs;
    var points = s.points.filter(function (p) { return p[0] >= t0; });
    var domain = yDomain(s, points);
    var lo = domain[0];
    var hi = domain[1];
    var iw = width - MARGIN.left - MARGIN.right;
    var ih = height - MARGIN.top - MARGIN.bottom;
    function x(t) { return MARGIN.left + ((t - t0) / (t1 - t0)) * iw; }
    function y(v) { return MARGIN.top + (1 - (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * ih; }
    function band(from, to, cls) {
      from = Math.max(from, lo);
      to = Math.min(to, hi);
      if (to <= from) return;
      svg("rect", { x: MARGIN.left, width: iw, y: y(to), height: Math.max(0, y(from) - y(to)), "class": cls }, root);
    }

    var unit = s.unit ? " " + s.unit : "";
    var label = s.key + " over the last " + hours + " h: ";
    label += points.length ? "latest " + fmt(points[points.length - 1][1]) + unit + ", " + points.length + " readings" : "no readings";
    if (has(s.min) && has(s.max)) label += "; operating range " + fmt(s.min) + "–" + fmt(s.max) + unit;

    var root = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": label, "class": "chart-svg" });
    svg("rect", { x: MARGIN.left, y: MARGIN.top, width: iw, height: ih, "class": "chart-bg" }, root);

    // Operating range shaded, the warning bands inside it, beyond it tinted red.
    if (has(s.min) || has(s.max)) {
      var rmin = has(s.min) ? s.min : -Infinity;
      var rmax = has(s.max) ? s.max : Infinity;
      band(rmin, rmax, "chart-band-ok");
      if (has(s.warn_low) && has(s.min)) band(s.min, s.warn_low, "chart-band-warn");
      if (has(s.warn_high) && has(s.max)) band(s.warn_high, s.max, "chart-band-warn");
      if (has(s.min)) band(-Infinity, s.min, "chart-band-out");
      if (has(s.max)) band(s.max, Infinity, "chart-band-out");
      [s.min, s.max].forEach(function (limit) {
        if (has(limit) && limit > lo && limit < hi) {
          svg("line", { x1: MARGIN.left, x2: MARGIN.left + iw, y1: y(limit), y2: y(limit), "class": "chart-limit" }, root);
        }
      });
    }

    // Grid and labels: round values on the left, start / middle / end time below.
    niceTicks(lo, hi).forEach(function (v) {
      var gy = y(v);
      svg("line", { x1: MARGIN.left, x2: MARGIN.left + iw, y1: gy, y2: gy, "class": "chart-grid" }, root);
      var ylab = svg("text", { x: MARGIN.left - 6, y: gy + 4, "text-anchor": "end", "class": "chart-label" }, root);
      ylab.textContent = fmt(v);
    });
    [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]].forEach(function (tick) {
      var xlab = svg("text", { x: x(tick[0]), y: height - 6, "text-anchor": tick[1], "class": "chart-label" }, root);
      xlab.textContent = timeFormat.format(new Date(tick[0]));
    });

    if (!points.length) {
      var empty = svg("text", { x: MARGIN.left + iw / 2, y: MARGIN.top + ih / 2 + 4, "text-anchor": "middle", "class": "chart-empty" }, root);
      empty.textContent = "No readings in the last " + hours + " h";
    } else {
      var gap = gapLimit(points);
      var d = "";
      for (var i = 0; i < points.length; i++) {
        var cmd = i === 0 || points[i][0] - points[i - 1][0] > gap ? "M" : "L";
        d += cmd + x(points[i][0]).toFixed(1) + " " + y(points[i][1]).toFixed(1) + " ";
      }
      svg("path", { d: d, "class": "chart-line" }, root);
      var marked = 0;
      for (var j = 0; j < points.length && marked < 300; j++) {
        if (state(s, points[j][1]) === "out") {
          svg("circle", { cx: x(points[j][0]), cy: y(points[j][1]), r: 2.5, "class": "chart-point-out" }, root);
          marked++;
        }
      }
      var last = points[points.length - 1];
      svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 4, "class": "chart-last chart-last-" + state(s, last[1]) }, root);
    }

    plot.textContent = "";
    plot.appendChild(root);
  }

  function drawAll() {
    for (var key in series) {
      if (Object.prototype.hasOwnProperty.call(series, key)) draw(key);
    }
  }

  function addPoints(key, fresh) {
    var s = series[key];
    if (!s || !fresh || !fresh.length) return;
    var newest = s.points.length ? s.points[s.points.length - 1][0] : -Infinity;
    for (var i = 0; i < fresh.length; i++) {
      if (fresh[i][0] > newest) {
        s.points.push(fresh[i]);
        newest = fresh[i][0];
      }
    }
    var t0 = serverNow() - windowMs;
    while (s.points.length && s.points[0][0] < t0) s.points.shift();
  }

  // ------------------------------------------------------------------ readings and findings

  function applyLatest(latest) {
    for (var key in latest) {
      if (!Object.prototype.hasOwnProperty.call(latest, key)) continue;
      var d = latest[key];
      var row = readingRows[key];
      if (row) {
        row.setAttribute("data-state", d.state || "none");
        row.setAttribute("data-finding", d.finding || "");
        var value = row.querySelector('[data-role="value"]');
        if (value) value.textContent = d.shown || "—";
        var ts = row.querySelector('[data-role="ts"]');
        if (ts) ts.textContent = d.ts_display || "no data";
        var bar = row.querySelector('[data-role="bar"]');
        if (bar && d.summary) bar.setAttribute("aria-label", d.summary);
        var marker = row.querySelector('[data-role="marker"]');
        if (marker) {
          marker.hidden = d.pos === null || d.pos === undefined;
          if (!marker.hidden) marker.style.left = d.pos + "%";
        }
      }
      var item = statusItems[key];
      if (item) {
        var badge = item.querySelector('[data-role="badge"]');
        if (badge) {
          badge.className = "badge badge-" + (d.state || "none");
          badge.textContent = d.ts ? d.text || d.shown : "no data";
        }
        var its = item.querySelector('[data-role="ts"]');
        if (its) its.textContent = d.ts_display || "";
      }
    }
  }

  function capitalise(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  function renderFindings(findings) {
    var list = document.getElementById("findings-list");
    if (!list) return;
    var signature = JSON.stringify(findings);
    if (signature === lastFindings) return;
    lastFindings = signature;
    list.textContent = "";
    findings.forEach(function (f) {
      var li = document.createElement("li");
      li.className = "finding finding-" + f.severity;
      var sev = document.createElement("span");
      sev.className = "sev sev-" + f.severity;
      sev.textContent = capitalise(f.severity);
      li.appendChild(sev);
      var message = document.createElement("p");
      message.className = "finding-message";
      message.textContent = f.message;
      li.appendChild(message);
      if (f.check) {
        var check = document.createElement("p");
        check.className = "finding-check";
        var strong = document.createElement("strong");
        strong.textContent = "Check:";
        check.appendChild(strong);
        check.appendChild(document.createTextNode(" " + f.check));
        li.appendChild(check);
      }
      list.appendChild(li);
    });
    var count = document.querySelector('[data-role="findings-count"]');
    if (count) count.textContent = String(findings.length);
    var empty = document.getElementById("findings-empty");
    if (empty) empty.hidden = findings.length > 0;
  }

  function apply(data) {
    if (has(data.now_ms)) clockSkew = data.now_ms - Date.now();
    if (data.cursor) cursor = data.cursor;
    var readings = data.readings || {};
    for (var key in readings) {
      if (Object.prototype.hasOwnProperty.call(readings, key)) addPoints(key, readings[key]);
    }
    drawAll(); // the window slides even when nothing new arrived
    applyLatest(data.latest || {});
    renderFindings(data.findings || []);
    var alerts = document.querySelector('[data-role="open-alerts"]');
    if (alerts && has(data.open_alerts)) alerts.textContent = String(data.open_alerts);
  }

  // ------------------------------------------------------------------ polling

  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, ms);
  }

  function poll() {
    timer = null;
    if (stopped || inFlight || document.hidden) return; // a hidden tab resumes on visibilitychange
    inFlight = true;
    var url = liveUrl + "?hours=" + hours + (cursor ? "&since=" + encodeURIComponent(cursor) : "");
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.redirected || response.status === 401 || response.status === 403) {
          var gone = new Error("signed out");
          gone.signedOut = true;
          throw gone;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        inFlight = false;
        apply(data);
        delay = POLL_MS;
        setLive("live", "live");
        schedule(POLL_MS);
      })
      .catch(function (err) {
        inFlight = false;
        if (err && err.signedOut) {
          stopped = true;
          setLive("offline", "signed out — reload the page");
          return;
        }
        setLive("offline", "offline — retrying…");
        schedule(delay);
        delay = Math.min(MAX_DELAY, delay * 2);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !inFlight && !stopped) poll();
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(drawAll, 150);
  });

  // ------------------------------------------------------------------ start

  readJson("asset-charts", []).forEach(function (s) {
    series[s.key] = s;
  });
  indexBySensor(".chart[data-sensor]", plots);
  for (var key in plots) {
    if (Object.prototype.hasOwnProperty.call(plots, key)) plots[key] = plots[key].querySelector('[data-role="plot"]');
  }
  indexBySensor(".reading-row[data-sensor]", readingRows);
  indexBySensor(".status-item[data-sensor]", statusItems);
  lastFindings = JSON.stringify(readJson("asset-findings", null));
  drawAll();
  schedule(POLL_MS);
})();
