// Talking to /graphql: queries over HTTP, subscriptions over graphql-transport-ws, and the bearer
// token, asked for when the server answers UNAUTHENTICATED and kept in sessionStorage for the tab.
// Without authentication configured the server never asks, and no token is sent.

const TOKEN_KEY = "ordersaga.token"; // GraphiQL's page reads the same key
// WebSocket close codes with which a server refuses a connection_init's credentials.
const REFUSED_CREDENTIALS = new Set([4401, 4403]);

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((error) => error.message).join("; "));
    this.code = errors[0]?.extensions?.code ?? "ERROR";
    this.errors = errors;
  }
}

const unauthenticated = (errors) => errors?.some?.((error) => error.extensions?.code === "UNAUTHENTICATED");
const token = () => sessionStorage.getItem(TOKEN_KEY);
const authorization = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

// Resolved by the token dialog; one prompt serves every request waiting for it.
let asking = null;

export function askForToken(why) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-why").textContent = why;
  const input = dialog.querySelector("input");
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue === "save" && input.value.trim()) {
          sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        }
        asking = null;
        resolve(Boolean(token()));
      },
      { once: true },
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  return asking;
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// The data of a query or mutation; a GraphQLError (with the server's code) when it is refused.
export async function graphql(query, variables = {}) {
  for (let asked = false; ; asked = true) {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...authorization() },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (!body.errors) return body.data;
    const error = new GraphQLError(body.errors);
    if (error.code === "UNAUTHENTICATED" && !asked) {
      forgetToken();
      if (await askForToken(error.message)) continue;
    }
    throw error;
  }
}

// A WebSocket that subscribes to `query` once acknowledged and reconnects with a growing pause.
// `onData(data)` gets each result; `onState(state, text)` hears "live" and "offline"; `onLive()` runs
// after every (re)connection, once the subscription is registered on the server's side.
export function subscribe(query, { onData, onState, onLive }) {
  const connect = (retries) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/graphql`, "graphql-transport-ws");
    const send = (message) => socket.send(JSON.stringify(message));
    let refused = null; // why the server would not let this socket subscribe, if it said so
    socket.onopen = () => send({ type: "connection_init", payload: authorization() });
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack":
          send({ id: "1", type: "subscribe", payload: { query } });
          retries = 0;
          onState("live", "Live");
          onLive();
          break;
        case "next":
          if (message.payload.errors) {
            // It fell behind, or was refused: start over (with a token, if that was why).
            if (unauthenticated(message.payload.errors)) refused = message.payload.errors[0].message;
            socket.close();
          } else {
            onData(message.payload.data);
          }
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "error":
          if (unauthenticated(message.payload)) refused = message.payload[0].message;
          socket.close();
          break;
        case "complete":
          socket.close();
          break;
      }
    };
    socket.onclose = async (event) => {
      onState("offline", "Disconnected, reconnecting…");
      if (refused || REFUSED_CREDENTIALS.has(event.code)) {
        forgetToken();
        await askForToken(refused || event.reason || "The server asks for a token to follow sagas live.");
      }
      setTimeout(() => connect(retries + 1), Math.min(10000, 500 * 2 ** retries));
    };
  };
  connect(0);
}
