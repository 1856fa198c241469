// A Cloudflare Worker around the edge handler: each POST creates a user in
// a replica carried in the worker's memory between requests (a real app
// keeps the snapshot in KV or a Durable Object).
import { handle } from '../edge/handler.mjs';

let snapshot = null;
export default {
  async fetch(request) {
    const answer = await handle(request, snapshot);
    snapshot = answer.snapshot;
    return answer.response;
  },
};
