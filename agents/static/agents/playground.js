// The admin playground: sends the conversation to the real chat stream and renders each chunk.
"use strict";
(function () {
  const root = document.getElementById("playground");
  const chatUrl = root.dataset.chatUrl;
  const agent = root.dataset.agent;
  const transcript = document.getElementById("transcript");
  const prompt = document.getElementById("prompt");
  const status = document.getElementById("status");
  const stats = document.getElementById("stats");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  let history = [];
  let controller = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function csrfToken() {
    return document.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function newId() {
    return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  }

  function renderChart(output) {
    const data = output.data || [];
    const width = 420, height = 180, pad = 24;
    const max = Math.max(1, ...data.map((d) => Number(d.value) || 0));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "chart chart-" + output.chartType);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height + pad);
    const step = (width - pad) / Math.max(1, data.length);
    const points = [];
    data.forEach((d, i) => {
      const h = ((Number(d.value) || 0) / max) * (height - pad);
      const x = pad + i * step;
      if (output.chartType === "line" || output.chartType === "area") {
        points.push(`${x + step / 2},${height - h}`);
      } else {
        const bar = document.createElementNS(svg.namespaceURI, "rect");
        bar.setAttribute("x", x + 4);
        bar.setAttribute("y", height - h);
        bar.setAttribute("width", Math.max(2, step - 8));
        bar.setAttribute("height", h);
        bar.setAttribute("fill", "#79aec8");
        svg.appendChild(bar);
      }
      const label = document.createElementNS(svg.namespaceURI, "text");
      label.setAttribute("x", x + 4);
      label.setAttribute("y", height + 14);
      label.textContent = `${d.label} (${d.value})`;
      svg.appendChild(label);
    });
    if (points.length) {
      const line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", "#417690");
      line.setAttribute("stroke-width", "2");
      svg.appendChild(line);
    }
    const box = el("div", "block block-chart");
    box.appendChild(el("strong", "", output.title));
    if (output.description) box.appendChild(el("div", "help", output.description));
    box.appendChild(svg);
    return box;
  }

  function renderForm(output) {
    const form = el("form", "block block-form");
    form.appendChild(el("strong", "", output.title));
    (output.fields || []).forEach((field) => {
      const label = el("label", "", field.label + (field.required ? " *" : ""));
      let input;
      if (field.type === "select" || field.type === "radio") {
        input = el("select");
        (field.options || []).forEach((o) => {
          const option = el("option", "", o.label);
          option.value = o.value;
          input.appendChild(option);
        });
      } else if (field.type === "textarea") {
        input = el("textarea");
      } else {
        input = el("input");
        const types = { slider: "range", checkbox: "checkbox", date: "date", number: "number",
                        email: "email", file: "file" };
        input.type = types[field.type] || "text";
      }
      if (field.placeholder) input.placeholder = field.placeholder;
      label.appendChild(input);
      form.appendChild(label);
    });
    const submit = el("button", "button", output.submitLabel || "Submit");
    submit.type = "button";
    form.appendChild(submit);
    return form;
  }

  function renderCode(output) {
    const box = el("div", "block block-code");
    box.appendChild(el("div", "help", (output.filename || "") + " [" + output.language + "]"));
    box.appendChild(el("pre", "", output.code));
    return box;
  }

  function renderCard(output) {
    const box = el("div", "block block-card");
    box.appendChild(el("strong", "", output.title));
    if (output.description) box.appendChild(el("div", "help", output.description));
    if (output.media && output.media.type === "image") {
      const img = el("img");
      img.src = output.media.url;
      img.alt = output.media.alt || "";
      box.appendChild(img);
    }
    if (output.content) box.appendChild(el("p", "", output.content));
    (output.actions || []).forEach((a) => box.appendChild(el("button", "button", a.label)));
    return box;
  }

  const RENDERERS = { chart: renderChart, form: renderForm, code: renderCode, card: renderCard };

  function renderOutput(output) {
    const render = output && RENDERERS[output.type];
    return render ? render(output) : el("pre", "", JSON.stringify(output, null, 2));
  }

  // Builds the assistant's UIMessage (for the next turn) and its view from the chunks.
  function assistantView(container) {
    const message = { id: newId(), role: "assistant", parts: [] };
    let stepBox = container;
    const blocks = {};
    const tools = {};
    return {
      message,
      handle(chunk) {
        switch (chunk.type) {
          case "start":
            if (chunk.messageId) message.id = chunk.messageId;
            break;
          case "start-step":
            message.parts.push({ type: "step-start" });
            stepBox = container.appendChild(el("div", "step"));
            break;
          case "text-start":
          case "reasoning-start": {
            const kind = chunk.type.split("-")[0];
            const part = { type: kind, text: "", state: "streaming" };
            message.parts.push(part);
            blocks[chunk.id] = { part, node: stepBox.appendChild(el("div", kind)) };
            break;
          }
          case "text-delta":
          case "reasoning-delta":
            blocks[chunk.id].part.text += chunk.delta;
            blocks[chunk.id].node.textContent = blocks[chunk.id].part.text;
            break;
          case "text-end":
          case "reasoning-end":
            blocks[chunk.id].part.state = "done";
            break;
          case "tool-input-start": {
            const part = { type: "tool-" + chunk.toolName, toolCallId: chunk.toolCallId,
                           state: "input-streaming" };
            message.parts.push(part);
            const node = stepBox.appendChild(el("div", "tool"));
            node.dataset.tool = chunk.toolName;
            node.appendChild(el("div", "name", "Tool " + chunk.toolName));
            const input = node.appendChild(el("pre", "input", ""));
            tools[chunk.toolCallId] = { part, node, input };
            break;
          }
          case "tool-input-delta":
            tools[chunk.toolCallId].input.textContent += chunk.inputTextDelta;
            break;
          case "tool-input-available": {
            const tool = tools[chunk.toolCallId];
            tool.part.state = "input-available";
            tool.part.input = chunk.input;
            tool.input.textContent = "input: " + JSON.stringify(chunk.input, null, 2);
            break;
          }
          case "tool-input-error":
          case "tool-output-error": {
            const tool = tools[chunk.toolCallId];
            Object.assign(tool.part, { state: "output-error", errorText: chunk.errorText });
            if (chunk.input !== undefined) tool.part.input = chunk.input;
            tool.node.appendChild(el("div", "error", "Error: " + chunk.errorText));
            break;
          }
          case "tool-output-available": {
            const tool = tools[chunk.toolCallId];
            Object.assign(tool.part, { state: "output-available", output: chunk.output });
            tool.node.appendChild(renderOutput(chunk.output));
            break;
          }
          case "error":
            container.appendChild(el("div", "error stream-error", "Error: " + chunk.errorText));
            break;
          case "finish":
            showStats(chunk);
            break;
        }
      },
    };
  }

  function showStats(finish) {
    const meta = finish.messageMetadata || {};
    const usage = meta.usage || {};
    const timings = meta.timings || {};
    stats.textContent = `model ${meta.model || "?"} · finish ${finish.finishReason} · ` +
      `tokens in ${usage.inputTokens ?? "?"} / out ${usage.outputTokens ?? "?"} · ` +
      `first token ${timings.timeToFirstTokenMs ?? "?"} ms · total ${timings.totalMs ?? "?"} ms`;
  }

  function addMessage(role, text) {
    const box = transcript.appendChild(el("div", "msg " + role));
    box.appendChild(el("div", "role", role === "user" ? "You" : agent));
    if (text !== undefined) box.appendChild(el("div", "text", text));
    return box;
  }

  async function* sseChunks(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart()).join("\n");
        if (data && data !== "[DONE]") yield JSON.parse(data);
      }
    }
  }

  async function send(text) {
    history.push({ id: newId(), role: "user", parts: [{ type: "text", text }] });
    addMessage("user", text);
    const container = addMessage("assistant");
    const view = assistantView(container);
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.disabled = false;
    status.textContent = "streaming…";
    try {
      const response = await fetch(chatUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ agent, messages: history }),
        signal: controller.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({ detail: response.statusText }));
        container.appendChild(el("div", "error", `${response.status}: ${body.detail}`));
        history.pop();
        return;
      }
      for await (const chunk of sseChunks(response)) view.handle(chunk);
      history.push(view.message);
      status.textContent = "done";
    } catch (error) {
      status.textContent = error.name === "AbortError" ? "stopped" : "failed: " + error.message;
    } finally {
      sendButton.disabled = false;
      stopButton.disabled = true;
      controller = null;
    }
  }

  document.getElementById("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    prompt.value = "";
    send(text);
  });
  stopButton.addEventListener("click", () => controller && controller.abort());
  document.getElementById("reset").addEventListener("click", () => {
    history = [];
    transcript.textContent = "";
    stats.textContent = "";
  });
})();
