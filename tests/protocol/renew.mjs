// Renews a socket's token with the reference graphql-transport-ws client (graphql-ws), whose API
// sends no ping payload: the ping goes through the socket its `connected` event hands over.
// argv: the server's ws://.../graphql URL, the Authorization of connection_init, the renewing one,
// and when the first token runs out (ISO 8601). Prints {"pong": payload}, then, once that moment
// has passed, one JSON line for a query on the same socket: {"next": payload} or {"error": ...}.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, authorization, renewal, firstEnd] = process.argv.slice(2);
let renewed;
const pong = new Promise((resolve) => (renewed = resolve));
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  lazy: false,
  connectionParams: { authorization },
  on: {
    connected: (socket) => socket.send(JSON.stringify({ type: 'ping', payload: { authorization: renewal } })),
    pong: (received, payload) => received && renewed(payload),
  },
});
try {
  console.log(JSON.stringify({ pong: await pong }));
  await new Promise((resolve) => setTimeout(resolve, Date.parse(firstEnd) - Date.now() + 100));
  await new Promise((resolve) => {
    client.subscribe(
      { query: '{ products { sku } }' },
      {
        next: (payload) => console.log(JSON.stringify({ next: payload })),
        error: (error) => {
          const reported = Array.isArray(error) ? error : { closeCode: error.code, reason: error.reason };
          console.log(JSON.stringify({ error: reported }));
          resolve();
        },
        complete: resolve,
      },
    );
  });
} finally {
  await client.dispose();
}
