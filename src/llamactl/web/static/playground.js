// The chat playground of an instance: a conversation sent to v1/chat/completions with the
// dashboard's key (a management key opens /v1 too), the reply streamed in as it comes.
// Model output is only ever set as text.
"use strict";

(function () {
  const { el, errorFrom, key, showView, setText, readSse, registerPage } = window.llamactl;
  const $ = (id) => document.getElementById(id);

  const chat = {
    name: null, // the instance talked to
    conversations: {}, // by instance: [{role, content}], kept until Clear or log-out
    controller: null, // the AbortController of the reply being streamed
  };

  function openChat(args) {
    const name = args.join("/");
    if (!name) {
      location.hash = "#/instances";
      return;
    }
    showView("chat", "instances");
    if (chat.name !== name) {
      chat.name = name;
      setText($("chat-name"), name);
      $("chat-charts").href = "#/charts/" + encodeURIComponent(name);
      renderConversation();
      showError(null);
      setText($("chat-state"), "");
    }
    $("chat-input").focus();
  }

  // Leaving the view stops the reply being streamed; what came of it is kept.
  function leaveChat() {
    if (chat.controller) chat.controller.abort();
  }

  function forgetChat() {
    chat.conversations = {};
    chat.name = null;
    $("chat-log").replaceChildren();
  }

  function conversation() {
    if (!chat.conversations[chat.name]) chat.conversations[chat.name] = [];
    return chat.conversations[chat.name];
  }

  function messageNode(message) {
    return el(
      "div", { class: "msg " + message.role },
      el("span", { class: "msg-role", text: message.role === "user" ? "You" : chat.name }),
      el("div", { class: "msg-text", text: message.content }),
    );
  }

  function renderConversation() {
    const messages = conversation();
    $("chat-log").replaceChildren(...messages.map(messageNode));
    $("chat-empty").hidden = messages.length > 0;
  }

  function scrollToEnd() {
    const log = $("chat-log");
    log.scrollTop = log.scrollHeight;
  }

  function showError(text) {
    setText($("chat-error"), text || "");
    $("chat-error").hidden = !text;
  }

  function setStreaming(streaming) {
    $("chat-send").disabled = streaming;
    $("chat-stop").disabled = !streaming;
    $("chat-clear").disabled = streaming;
  }

  // What the server said, with when to try again when it said so (a 503 while the
  // instance is busy or starting).
  async function refusal(response) {
    const error = await errorFrom(response);
    const retry = response.headers.get("retry-after");
    const hint = retry ? " Try again in " + retry + " s." : "";
    return response.status + ": " + error.message + hint;
  }

  function requestBody(messages) {
    const system = $("chat-system").value.trim();
    const body = { model: chat.name, stream: true, messages: system ? [{ role: "system", content: system }] : [] };
    body.messages.push(...messages.map(({ role, content }) => ({ role, content })));
    const temperature = $("chat-temperature").value.trim();
    if (temperature !== "" && Number.isFinite(Number(temperature))) body.temperature = Number(temperature);
    return body;
  }

  async function send() {
    const text = $("chat-input").value;
    if (!text.trim() || chat.controller) return;
    showError(null);
    const name = chat.name;
    const messages = conversation();
    const asked = { role: "user", content: text };
    messages.push(asked);
    const reply = { role: "assistant", content: "" };
    $("chat-input").value = "";
    $("chat-empty").hidden = true;
    $("chat-log").append(messageNode(asked));
    const replyNode = messageNode(reply);
    replyNode.classList.add("pending");
    const replyText = replyNode.querySelector(".msg-text");
    $("chat-log").append(replyNode);
    scrollToEnd();
    const controller = new AbortController();
    chat.controller = controller;
    setStreaming(true);
    setText($("chat-state"), "Waiting for " + name + "…");
    const started = performance.now();
    let failure = null;
    let usage = null;
    try {
      const response = await fetch("v1/chat/completions", {
        method: "POST",
        headers: { Authorization: "Bearer " + (key() || ""), "Content-Type": "application/json" },
        body: JSON.stringify(requestBody(messages.slice())),
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok) throw new Error(await refusal(response));
      const append = (delta) => {
        if (!delta) return;
        reply.content += delta;
        replyText.append(document.createTextNode(delta));
        scrollToEnd();
      };
      if (!(response.headers.get("content-type") || "").includes("text/event-stream")) {
        const answer = await response.json();
        append(answer.choices && answer.choices[0] && answer.choices[0].message ? answer.choices[0].message.content : "");
        usage = answer.usage || null;
      } else {
        setText($("chat-state"), "Streaming…");
        await readSse(response, controller, (event, data) => {
          if (failure) return;
          if (event === "error") {
            failure = errorText(data);
            return;
          }
          if (data === "[DONE]") return;
          let chunk;
          try { chunk = JSON.parse(data); } catch (e) { return; }
          if (chunk.error) failure = errorText(data);
          const choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta) append(choice.delta.content);
          if (chunk.usage) usage = chunk.usage;
        });
      }
    } catch (err) {
      if (err.name !== "AbortError") failure = failure || err.message || String(err);
    }
    const stopped = controller.signal.aborted;
    chat.controller = null;
    setStreaming(false);
    replyNode.classList.remove("pending");
    if (!reply.content) {
      // Nothing came back: the question goes back into the box (unless another was
      // typed meanwhile), to be sent again.
      messages.pop();
      replyNode.previousSibling.remove();
      replyNode.remove();
      if (chat.name === name && !$("chat-input").value) $("chat-input").value = text;
      $("chat-empty").hidden = messages.length > 0;
    } else {
      messages.push(reply);
      if (stopped) replyNode.classList.add("stopped");
    }
    if (failure) showError(failure);
    const took = ((performance.now() - started) / 1000).toFixed(1) + " s";
    const counted = usage && typeof usage.completion_tokens === "number" ? usage.completion_tokens + " tokens in " : "";
    setText($("chat-state"), stopped ? "Stopped." : failure ? "Failed." : "Done: " + counted + took + ".");
  }

  // An SSE error event's message ({"error": {"message"}} or {"message"}, else its text).
  function errorText(data) {
    try {
      const body = JSON.parse(data);
      const message = (body.error && (body.error.message || body.error)) || body.message;
      if (typeof message === "string") return message;
    } catch (e) { /* not JSON: the text itself */ }
    return String(data);
  }

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  // Enter sends, Shift+Enter is a new line.
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("chat-stop").addEventListener("click", () => {
    if (chat.controller) chat.controller.abort();
  });
  $("chat-clear").addEventListener("click", () => {
    chat.conversations[chat.name] = [];
    renderConversation();
    showError(null);
    setText($("chat-state"), "");
    $("chat-input").focus();
  });

  registerPage("chat", { open: openChat, leave: leaveChat, forget: forgetChat });
})();
