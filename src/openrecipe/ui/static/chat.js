// Two models answer the same message side by side; each reply streams in, labelled with its model.
const histories = { a: [], b: [] };

function label(side) {
  const select = document.getElementById('model-' + side);
  return select.options[select.selectedIndex].text;
}

async function ask(side, text) {
  const transcript = document.getElementById('transcript-' + side);
  histories[side].push({ role: 'user', content: text });
  transcript.append(el('div', { class: 'msg user' }, text));
  const body = el('span', { class: 'reply' });
  const bubble = el('div', { class: 'msg assistant', 'data-side': side }, el('span', { class: 'who' }, label(side)), body);
  transcript.append(bubble);
  const response = await fetch('/api/chat', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
    body: JSON.stringify({ model: document.getElementById('model-' + side).value,
      system: document.getElementById('system-' + side).value, messages: histories[side] }),
  });
  if (!response.ok) { body.textContent = (await response.json()).error; bubble.classList.add('error'); return; }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let text_ = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const chunk = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      if (!chunk.startsWith('data: ')) continue;
      const piece = JSON.parse(chunk.slice(6));
      if (piece.delta) { text_ += piece.delta; body.textContent = text_; }
      if (piece.error) { body.textContent = piece.error; bubble.classList.add('error'); }
      if (piece.done) bubble.dataset.done = piece.done;
    }
  }
  histories[side].push({ role: 'assistant', content: text_ });
}

function sendBoth() {
  const input = document.getElementById('chat-input');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  ask('a', text);
  ask('b', text);
}
document.getElementById('chat-input').addEventListener('keydown', event => { if (event.key === 'Enter') sendBoth(); });
