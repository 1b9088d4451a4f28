// Shared helpers: every state change carries the session's CSRF token.
function csrfToken() { return document.querySelector('meta[name="csrf-token"]').content; }
function t(key) { return (window.T && window.T[key]) || key; }
async function post(url, body, raw) {
  const response = await fetch(url, {
    method: 'POST',
    headers: raw ? { 'X-CSRF-Token': csrfToken() } : { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
    body: raw ? body : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
async function getJSON(url) {
  const response = await fetch(url);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
async function logout() { await post('/logout', {}); location.href = '/login'; }
function lossChart(target, seriesNames) {
  const width = Math.max(target.clientWidth || 500, 300);
  const series = [{}].concat(seriesNames.map((name, i) => ({ label: name, stroke: ['#2f6fde', '#e65100', '#2e7d32', '#6a1b9a', '#c62828'][i % 5], width: 2 })));
  return new uPlot({ width, height: 260, series, scales: { x: { time: false } } }, [[]].concat(seriesNames.map(() => [])), target);
}
