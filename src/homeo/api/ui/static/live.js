// homeo dashboard: a run page follows its run over server-sent events
// (GET /ui/runs/{id}/events) while it is not final: the status and each step's
// row change in place, new steps are added; when the run starts waiting or
// ends, the page reloads to show the forms, output and whole waterfall.
// No framework, nothing from another host; text only through textContent.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) { return; }
  var initial = root.dataset.status;
  var events = new EventSource(root.dataset.events);
  var status = document.getElementById("run-status");
  var note = document.getElementById("live-note");

  function setStatus(element, value) {
    element.textContent = value;
    element.className = "status status-" + value;
  }

  function stepRow(step) {
    var body = document.querySelector("#steps tbody");
    if (!body) { return null; }
    var row = body.querySelector('tr[data-seq="' + step.seq + '"]');
    if (row) { return row; }
    row = document.createElement("tr");
    row.dataset.seq = String(step.seq);
    for (var i = 0; i < 7; i++) { row.appendChild(document.createElement("td")); }
    var link = document.createElement("a");
    link.href = root.dataset.run + "/steps/" + step.seq;
    link.textContent = step.kind + " " + step.name;
    row.cells[0].textContent = String(step.seq);
    row.cells[1].appendChild(link);
    var mark = document.createElement("span");
    row.cells[2].appendChild(mark);
    body.appendChild(row);
    return row;
  }

  events.addEventListener("run", function (message) {
    var run = JSON.parse(message.data);
    setStatus(status, run.status);
  });
  events.addEventListener("step", function (message) {
    var step = JSON.parse(message.data);
    var row = stepRow(step);
    if (!row) { window.location.reload(); return; }
    setStatus(row.cells[2].querySelector("span"), step.status);
    if (step.duration_ms !== null && step.duration_ms !== undefined) {
      row.cells[4].textContent = step.duration_ms.toFixed(1) + " ms";
    }
    row.cells[5].textContent = step.input_tokens + " / " + step.output_tokens;
  });
  events.addEventListener("waiting", function () {
    if (initial !== "waiting") { events.close(); window.location.reload(); }
  });
  events.addEventListener("end", function () {
    events.close();
    window.location.reload();
  });
  events.onerror = function () {
    if (note) { note.textContent = "Live updates paused; reload the page to resume."; }
  };
  // Leaving the page (or the browser keeping it in its back/forward cache)
  // ends the stream, so the server does not hold it open.
  window.addEventListener("pagehide", function () { events.close(); });
  if (note) { note.textContent = "Updating live."; }
}());
