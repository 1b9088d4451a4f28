// Live run view: every log line, metric and stage change arrives over SSE; the browser resumes with
// Last-Event-ID after a dropped connection, and a refreshed page replays the run from its first event.
const logBox = document.getElementById('log');
const seenIds = new Set();
const losses = {};
let chart = null;
let logLines = 0;

function drawLoss() {
  const stages = Object.keys(losses);
  if (!stages.length) return;
  const steps = [...new Set(stages.flatMap(s => losses[s].map(p => p[0])))].sort((a, b) => a - b);
  const series = stages.map(s => { const m = new Map(losses[s]); return steps.map(x => m.has(x) ? m.get(x) : null); });
  if (!chart || chart.series.length !== stages.length + 1) {
    document.getElementById('loss-chart').replaceChildren();
    chart = lossChart(document.getElementById('loss-chart'), stages);
  }
  chart.setData([steps, ...series]);
}

function onStages(report) {
  const list = document.getElementById('stages');
  list.replaceChildren(...(report.stages || []).map(stage =>
    el('li', { class: 'stage state-' + stage.status, 'data-stage': stage.id },
      `${stage.id} (${stage.kind}) — ${stage.status}${stage.seconds ? ` ${stage.seconds.toFixed(1)} s` : ''}`)));
}

function setState(state) {
  const badge = document.getElementById('run-state');
  badge.textContent = t('state.' + state);
  badge.dataset.state = state;
}

const source = new EventSource(`/api/jobs/${window.JOB_ID}/events`);
source.addEventListener('open', () => { document.body.dataset.connections = +(document.body.dataset.connections || 0) + 1; });
function once(handler) {
  return event => {
    if (event.lastEventId && seenIds.has(event.lastEventId)) return;
    if (event.lastEventId) seenIds.add(event.lastEventId);
    handler(JSON.parse(event.data), event);
  };
}
source.addEventListener('log', once(data => {
  logLines++;
  document.getElementById('log-count').textContent = logLines;
  const stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
  logBox.append(data.line + '\n');
  if (stick) logBox.scrollTop = logBox.scrollHeight;
}));
source.addEventListener('metric', once(data => {
  if (data.loss !== undefined && data.step !== undefined) {
    (losses[data.stage] = losses[data.stage] || []).push([data.step, data.loss]);
    const chartBox = document.getElementById('loss-chart');
    chartBox.dataset.points = (+(chartBox.dataset.points || 0) + 1).toString();
    drawLoss();
  }
  if (data.probes_passed !== undefined) document.getElementById('probes').textContent = `${data.stage}: ${data.probes_passed} @ step ${data.step}`;
}));
source.addEventListener('stages', once(onStages));
source.addEventListener('state', once(data => setState(data.state)));
source.addEventListener('end', event => { setState(JSON.parse(event.data).state); source.close(); });
