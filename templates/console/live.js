// Live room: follows the journal through server-sent events; the page works without it.
(function () {
  var room = document.getElementById('room');
  if (!room || !window.EventSource) return;
  var es = new EventSource(room.dataset.live);
  var fields = ['step', 'state', 'bytes', 'rate', 'error'];
  es.addEventListener('tile', function (e) {
    var t = JSON.parse(e.data);
    var el = room.querySelector('.tile[data-name="' + CSS.escape(t.name) + '"]');
    if (!el) return;
    fields.forEach(function (f) { el.querySelector('.' + f).textContent = t[f]; });
    el.className = 'tile state-' + t.state;
  });
  es.addEventListener('summary', function (e) {
    var s = JSON.parse(e.data);
    document.getElementById('outcome').textContent = s.outcome;
    document.getElementById('done').textContent = s.done;
    document.getElementById('time-left').textContent = s.time_left || '\u2014';
    document.getElementById('chart').src = room.dataset.chart + '?seq=' + s.seq + '&v=' + s.stamp;
    var links = room.querySelector('form.links');
    if (links && s.outcome.indexOf('e:signoff') < 0) links.hidden = true;
  });
})();
