// Live pages: build logs, runtime logs and status badges over websockets.
// Frames are JSON. Log text arrives as HTML the server has already escaped
// (app/logformat.py); everything else (status names, timestamps, replica
// labels) is set as text, never as markup. No inline script or style (CSP).
(function () {
  "use strict";

  var MAX_LINES = 5000; // lines kept in a log view; older ones are removed
  var PAUSE_BUFFER = 600; // frames (at most ~1 minute) kept while paused
  var STOP_CODES = { 1000: true, 4403: true, 4429: true, 4503: true, 1008: true };
  // Closed for good with one of these: say so on the page (base.html's status region).
  // The page itself still works without them (4503: the web worker's live views are
  // all taken, and its remaining threads are kept for pages).
  var NOTICES = {
    4429: "Live updates paused: too many open tabs — reload to retry.",
    4503: "Live updates paused: the server is busy — reload to retry.",
  };

  // Flask builds websocket rules as absolute ws:// URLs; keep the path and use
  // this page's host and scheme (wss:// behind https).
  function socketUrl(address) {
    var url = new URL(address, location.href);
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url.pathname + url.search;
  }

  // One socket that reconnects (with back-off) unless the server closed it for good.
  function connect(path, handlers) {
    var delay = 1000;
    function open() {
      var ws = new WebSocket(socketUrl(typeof path === "function" ? path() : path));
      ws.addEventListener("open", function () {
        delay = 1000;
        if (handlers.open) handlers.open();
      });
      ws.addEventListener("message", function (event) {
        var frame;
        try {
          frame = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        handlers.frame(frame);
      });
      ws.addEventListener("close", function (event) {
        if (NOTICES[event.code]) notice(NOTICES[event.code]);
        if (handlers.closed) handlers.closed(event);
        if (STOP_CODES[event.code]) return;
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      });
    }
    open();
  }

  function notice(text) {
    var region = document.getElementById("live-notice");
    if (region) region.textContent = text;
  }

  function escapeText(text) {
    var span = document.createElement("span");
    span.textContent = text == null ? "" : String(text);
    return span.innerHTML;
  }

  function safeClass(name) {
    return String(name || "").replace(/[^a-z0-9-]/gi, "");
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  function trim(el) {
    var extra = el.children.length - MAX_LINES;
    while (extra-- > 0 && el.firstElementChild) el.removeChild(el.firstElementChild);
  }

  // line.html was escaped by the server; only our own markup wraps it.
  function appendHtml(el, html) {
    var follow = nearBottom(el);
    var empty = el.querySelector(".empty");
    if (empty) el.removeChild(empty);
    el.insertAdjacentHTML("beforeend", html);
    trim(el);
    if (follow) el.scrollTop = el.scrollHeight;
  }

  function note(text) {
    return '<span class="line note">' + escapeText(text) + "\n</span>";
  }

  // ---- status badges ---------------------------------------------------------

  function paint(badge, status) {
    badge.textContent = status;
    badge.className = "badge status-" + safeClass(status);
  }

  // App health (what serves it now): badges as text, the summary as their title; the
  // app page's "why" panel is fetched again from the server (escaped there).
  function applyHealth(change) {
    document
      .querySelectorAll('[data-app-health="' + Number(change.app_id) + '"]')
      .forEach(function (badge) {
        var health = change.health || "unknown";
        badge.textContent = health;
        badge.className = "badge health-" + safeClass(health);
        badge.title = change.summary || "";
        badge.hidden = !change.health;
      });
    document
      .querySelectorAll('[data-health-panel="' + Number(change.app_id) + '"]')
      .forEach(function (panel) { refresh(panel); });
  }

  function applyStatus(change) {
    if (change.kind === "health") {
      applyHealth(change);
      return;
    }
    document
      .querySelectorAll('[data-deployment-badge="' + Number(change.deployment_id) + '"]')
      .forEach(function (badge) { paint(badge, change.status); });
    if (change.latest) {
      document
        .querySelectorAll('[data-app-badge="' + Number(change.app_id) + '"]')
        .forEach(function (badge) { paint(badge, change.status); });
    }
    document.querySelectorAll("[data-live-list]").forEach(function (list) {
      if (lacks(list, change)) refresh(list);
    });
  }

  // ---- lists: rows that appear ------------------------------------------------

  // A list lacks a change when it has no row to repaint: a deployments table
  // (data-app-id) and a deployment of its app newer than its rows; the app list
  // and the newest deployment of an app it does not show (the status socket
  // only forwards the user's teams, all of which the app list shows).
  function lacks(list, change) {
    if (list.dataset.liveList === "deployments") {
      if (Number(list.dataset.appId) !== Number(change.app_id)) return false;
      var newest = 0;
      list.querySelectorAll("[data-deployment-badge]").forEach(function (badge) {
        newest = Math.max(newest, Number(badge.dataset.deploymentBadge) || 0);
      });
      return Number(change.deployment_id) > newest;
    }
    if (list.dataset.liveList === "apps") {
      return Boolean(change.latest) &&
        !list.querySelector('[data-app-badge="' + Number(change.app_id) + '"]');
    }
    return false;
  }

  // Fetch the list's partial again (the server renders it, escaped) and swap it.
  // One fetch per list at a time; a change meanwhile asks for one more after it.
  var fetching = {};

  function refresh(list) {
    var id = list.id;
    if (!id || !window.htmx || !list.dataset.refreshUrl) return;
    if (fetching[id]) {
      fetching[id] = "again";
      return;
    }
    fetching[id] = "busy";
    function done() {
      var again = fetching[id] === "again";
      delete fetching[id];
      var fresh = document.getElementById(id);
      if (again && fresh) refresh(fresh);
    }
    htmx.ajax("GET", list.dataset.refreshUrl, { target: "#" + id, swap: "outerHTML" }).then(done, done);
  }

  function statusSocket() {
    var body = document.body;
    if (!body.dataset.liveStatus) return;
    if (!document.querySelector("[data-app-badge], [data-deployment-badge], [data-live-list], [data-app-health]")) return;
    var since = body.dataset.liveSince || "";
    connect(function () { return body.dataset.liveStatus + "?since=" + encodeURIComponent(since); }, {
      frame: function (frame) {
        if (frame.type !== "status") return;
        (frame.changes || []).forEach(applyStatus);
      },
    });
  }

  // ---- build log -------------------------------------------------------------

  function buildLog(pre) {
    var last = parseInt(pre.dataset.after || "0", 10) || 0;
    var statusUrl = pre.dataset.statusUrl;
    connect(function () { return pre.dataset.liveLog + "?after=" + last; }, {
      frame: function (frame) {
        if (frame.type === "lines") {
          var html = "";
          frame.lines.forEach(function (line) {
            if (line.seq <= last) return;
            last = line.seq;
            html += '<span class="line stream-' + safeClass(line.stream) + '">' + line.html + "\n</span>";
          });
          if (html) appendHtml(pre, html);
        } else if (frame.type === "status") {
          applyStatus(frame);
          if (statusUrl && window.htmx) {
            htmx.ajax("GET", statusUrl, { target: "#deployment-status", swap: "outerHTML" });
          }
        }
      },
    });
  }

  // ---- runtime log -----------------------------------------------------------

  function runtimeLog(pre) {
    var pauseButton = document.getElementById("log-pause");
    var filterInput = document.getElementById("log-filter");
    var state = document.getElementById("log-state");
    var paused = false;
    var held = [];
    var heldDropped = 0;
    var freshSocket = true;
    var filter = "";
    var following = "";

    function matches(el) {
      return !filter || el.textContent.toLowerCase().indexOf(filter) !== -1;
    }

    function render(lines) {
      var html = "";
      lines.forEach(function (line) {
        html += '<span class="line"><span class="ts">' + escapeText(line.ts) + '</span> <span class="src">' +
          escapeText(line.src) + "</span> " + line.html + "\n</span>";
      });
      return html;
    }

    function show(html) {
      var before = pre.children.length;
      appendHtml(pre, html);
      if (filter) {
        for (var i = Math.max(0, before - 1); i < pre.children.length; i++) {
          pre.children[i].hidden = !matches(pre.children[i]);
        }
      }
    }

    function setState(text) {
      if (state) state.textContent = text;
    }

    pauseButton.hidden = false;
    filterInput.hidden = false;
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
      pauseButton.textContent = paused ? "Resume" : "Pause";
      if (!paused) {
        var html = held.join("");
        if (heldDropped) html += note("… " + heldDropped + " frames skipped while paused");
        held = [];
        heldDropped = 0;
        if (html) show(html);
        setState(following);
      } else {
        setState("Paused.");
      }
    });
    filterInput.addEventListener("input", function () {
      filter = filterInput.value.trim().toLowerCase();
      for (var i = 0; i < pre.children.length; i++) pre.children[i].hidden = !matches(pre.children[i]);
    });

    connect(pre.dataset.liveRuntime, {
      open: function () { freshSocket = true; },
      frame: function (frame) {
        var html = "";
        if (frame.type === "attached") {
          if (freshSocket) {
            pre.textContent = ""; // the socket starts again from the last lines
            freshSocket = false;
          } else if (frame.following) {
            html += note("── " + frame.following);
          } else {
            html += note("── deployment #" + frame.deployment_id + " is live: following its containers");
          }
          if (frame.following) {
            following = frame.following; // a database's container (its own words)
          } else {
            following = frame.deployment_id ? "Following " + frame.replicas.length +
              " container(s) of deployment #" + frame.deployment_id + "." : "No running deployment: waiting for one.";
          }
          setState(paused ? "Paused." : following);
        } else if (frame.type === "health") {
          applyHealth(frame);
        } else if (frame.type === "lines") {
          html += render(frame.lines);
          if (frame.skipped) html += note("… " + frame.skipped + " lines skipped (too fast to show)");
        }
        if (!html) return;
        if (paused) {
          held.push(html);
          if (held.length > PAUSE_BUFFER) {
            held.shift();
            heldDropped += 1;
          }
          setState("Paused: " + held.length + " new frame(s) waiting.");
        } else {
          show(html);
        }
      },
      closed: function (event) {
        if (event.code === 4403) setState(event.reason || "Closed.");
        if (event.code === 4429 || event.code === 4503) {
          setState("Not following: live updates paused.");
        }
      },
    });
  }

  function start() {
    var build = document.querySelector("pre[data-live-log]");
    if (build) buildLog(build);
    var runtime = document.querySelector("pre[data-live-runtime]");
    if (runtime) runtimeLog(runtime);
    if (!build && !runtime) statusSocket();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
