// Runs graphql-http's GraphQL-over-HTTP conformance audits against the server at argv[2] (its
// /graphql URL) and prints every result as one JSON line: {id, name, status, reason}.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
for (const result of results) {
  const reason = result.status === 'ok' ? undefined : result.reason;
  console.log(JSON.stringify({ id: result.id, name: result.name, status: result.status, reason }));
}
