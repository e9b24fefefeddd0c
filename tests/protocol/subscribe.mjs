// Subscribes with the reference graphql-transport-ws client (graphql-ws) to the server at argv[2]
// (its ws://.../graphql URL): argv[3] is the document, argv[4] its variables as JSON. Prints one
// JSON line per event: {"next": payload}, then {"complete": true} or {"error": errors}.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, query, variables] = process.argv.slice(2);
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
try {
  await new Promise((resolve) => {
    client.subscribe(
      { query, variables: JSON.parse(variables ?? '{}') },
      {
        next: (payload) => console.log(JSON.stringify({ next: payload })),
        error: (errors) => {
          // graphql-ws reports an `error` message as its GraphQL errors, a closed socket as the event.
          const reported = Array.isArray(errors) ? errors : { closeCode: errors.code, reason: errors.reason };
          console.log(JSON.stringify({ error: reported }));
          resolve();
        },
        complete: () => {
          console.log(JSON.stringify({ complete: true }));
          resolve();
        },
      },
    );
  });
} finally {
  await client.dispose();
}
