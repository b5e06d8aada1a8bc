// Sends events to an Appizer server with the official Segment and PostHog Node
// libraries, changed in nothing but the host, and prints what it sent as JSON.
// Usage: node node_clients.js HOST WRITE_KEY (with NODE_PATH naming their node_modules)
const { randomUUID } = require('crypto');
const { Analytics } = require('@segment/analytics-node');
const { PostHog } = require('posthog-node');

const [host, writeKey] = process.argv.slice(2);
const errors = [];
const sent = [];
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
const record = (library, event, distinctId, messageId, properties, timestamp) =>
  sent.push({ library, event, distinct_id: distinctId, message_id: messageId, properties, timestamp: timestamp.toISOString() });

async function main() {
  const segment = new Analytics({ writeKey, host, maxEventsInBatch: 15, flushInterval: 100 });
  segment.on('error', (e) => errors.push(String(e && (e.reason || e.code || e))));
  for (let i = 0; i < 5; i++) {
    const messageId = randomUUID();
    const timestamp = new Date(now.getTime() - i * 60000);
    const properties = { plan: 'team', seats: 3 + i };
    segment.track({ userId: 'node-user', event: 'Seat Added', properties, timestamp, messageId });
    record('segment', 'Seat Added', 'node-user', messageId, properties, timestamp);
  }
  let messageId = randomUUID();
  segment.identify({ userId: 'node-user', traits: { email: 'node@example.com' }, timestamp: now, messageId });
  record('segment', '$identify', 'node-user', messageId, {}, now);
  messageId = randomUUID();
  segment.page({ anonymousId: 'node-anon', name: 'Docs', properties: { path: '/docs' }, timestamp: now, messageId });
  record('segment', '$pageview', 'node-anon', messageId, { path: '/docs' }, now);
  messageId = randomUUID();
  segment.alias({ previousId: 'node-anon', userId: 'node-user', timestamp: now, messageId });
  record('segment', '$create_alias', 'node-user', messageId, {}, now);
  await segment.closeAndFlush({ timeout: 10000 });

  const posthog = new PostHog(writeKey, { host, flushAt: 10, flushInterval: 0 });
  posthog.on('error', (e) => errors.push(String(e)));
  for (let i = 0; i < 4; i++) {
    const uuid = randomUUID();
    const timestamp = new Date(now.getTime() - i * 30000);
    const properties = { $current_url: `https://app.example/${i}`, step: i };
    posthog.capture({ distinctId: 'node-ph', event: 'step viewed', properties, timestamp, uuid });
    record('posthog', 'step viewed', 'node-ph', uuid, properties, timestamp);
  }
  await posthog.shutdown(10000);
  console.log(JSON.stringify({ errors, sent }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
