#!/usr/bin/env node
// Interop test: the official MCP TypeScript SDK client (@modelcontextprotocol/sdk 1.x) against a running
// vaultline server over Streamable HTTP with a bearer key. Starts nothing itself.
//
//   node ts_client_test.mjs URL KEY        (or VAULTLINE_URL / VAULTLINE_KEY in the environment)
//
// Prints one line per check and, last, exactly `N passed, M failed`. Exits 1 if any check failed.
// The SDK validates each tool result's structuredContent against the tool's outputSchema from
// tools/list, so a schema mismatch surfaces as a failed check here.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResultSchema } from '@modelcontextprotocol/sdk/types.js';

const url = process.argv[2] ?? process.env.VAULTLINE_URL;
const key = process.argv[3] ?? process.env.VAULTLINE_KEY;
if (!url || !key) {
  console.error('usage: node ts_client_test.mjs URL KEY   (or set VAULTLINE_URL and VAULTLINE_KEY)');
  process.exit(2);
}

let passed = 0;
let failed = 0;
const pass = (name, detail = '') => { passed++; console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`); };
const fail = (name, detail) => { failed++; console.log(`FAIL ${name}: ${detail}`); };
const skip = (what) => console.log(`skipped: ${what} not listed`);
const errText = (e) => {
  const s = (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)).replace(/\s+/g, ' ');
  return s.length > 2000 ? `${s.slice(0, 2000)}…` : s;
};

// Runs one check: fn returns an optional detail string or throws (assertion or SDK error).
async function check(name, fn) {
  try { pass(name, (await fn()) ?? ''); return true; } catch (e) { fail(name, errText(e)); return false; }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }

const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

function textOf(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

const validatedCalls = [];
const unvalidatedCalls = [];

// Calls a tool and returns {sc, text}. Fails on isError, missing structuredContent or no text block.
// A structuredContent that does not match the tool's outputSchema makes the SDK throw here.
async function call(client, name, args) {
  const r = await client.callTool({ name, arguments: args });
  const text = textOf(r);
  assert(!r.isError, `isError: ${text}`);
  assert(r.structuredContent && typeof r.structuredContent === 'object', `no structuredContent; text: ${text}`);
  assert(text.length > 0, 'no text content block');
  // The SDK validated structuredContent only if it has a validator compiled from tools/list.
  const validated = typeof client.getToolOutputValidator === 'function' ? Boolean(client.getToolOutputValidator(name)) : true;
  (validated ? validatedCalls : unvalidatedCalls).push(`${name}.${args.action}`);
  return { sc: r.structuredContent, text };
}

function transport(k) {
  return new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${k}` } } });
}

const client = new Client({ name: 'vaultline-ts-client-test', version: '0.1.0' });
const t = transport(key);

// Captures the raw tools/list result (before SDK validation) to report its size.
let rawToolsBytes = null;

const connected = await check('connect (initialize over Streamable HTTP, bearer key)', async () => {
  await client.connect(t);
  const orig = t.onmessage;
  t.onmessage = (msg, extra) => {
    if (msg && msg.result && Array.isArray(msg.result.tools)) rawToolsBytes = Buffer.byteLength(JSON.stringify(msg.result));
    orig?.(msg, extra);
  };
  const v = client.getServerVersion();
  return `server ${v?.name} ${v?.version}, protocol ${t.protocolVersion ?? '?'}`;
});

if (connected) {
  let listed = null;
  await check('tools/list (SDK-validated) has health and workflow', async () => {
    try {
      listed = (await client.listTools()).tools.map((x) => x.name);
    } finally {
      if (rawToolsBytes !== null) console.log(`info tools/list result JSON: ${rawToolsBytes} bytes`);
    }
    for (const n of ['health', 'workflow']) assert(listed.includes(n), `${n} not in [${listed}]`);
    return listed.join(', ');
  });
  if (listed === null) {
    // The SDK rejected tools/list (that check failed above). Read the names without the SDK's schema,
    // only to decide which tool checks apply; tool results are then not schema-validated, which the
    // per-call checks report as failures.
    try {
      const raw = await client.request({ method: 'tools/list', params: {} }, ResultSchema);
      listed = (raw.tools ?? []).map((x) => x.name);
      console.log(`info tools listed (unvalidated): ${listed.join(', ')}`);
    } catch (e) { console.log(`info raw tools/list failed too: ${errText(e)}`); listed = []; }
  }
  const has = (n) => listed.includes(n);

  await check('health status', async () => {
    const { sc, text } = await call(client, 'health', { action: 'status' });
    assert(sc.status === 'ok', `status=${JSON.stringify(sc.status)}`);
    assert(typeof sc.version === 'string' && sc.version, 'no version');
    assert(sc.store && typeof sc.store === 'object', 'no store object');
    assert(text.includes(sc.version), `text "${text}" lacks version ${sc.version}`);
    assert(text.includes(sc.status), `text "${text}" lacks status ${sc.status}`);
    return `version ${sc.version}`;
  });

  let wid = null;
  await check('workflow create', async () => {
    const title = `ts client ${RUN}`;
    const { sc, text } = await call(client, 'workflow', { action: 'create', task_type: 'fix', complexity: 'simple', title, language: 'rust' });
    const w = sc.workflow;
    assert(w && typeof w.id === 'string' && w.id, `no workflow.id in ${JSON.stringify(sc)}`);
    assert(w.status === 'open', `status=${w.status}`);
    assert(w.task_type === 'fix' && w.complexity === 'simple', `classification ${w.task_type}/${w.complexity}`);
    assert(w.title === title, `title=${w.title}`);
    assert(text.includes(w.id), `text "${text}" lacks id ${w.id}`);
    assert(text.includes(w.status), `text "${text}" lacks status ${w.status}`);
    wid = w.id;
    return wid;
  });

  if (wid) {
    await check('workflow stage', async () => {
      const { sc, text } = await call(client, 'workflow', {
        action: 'stage', workflow_id: wid, stage_name: 'attempt', model: 'ts-model', cost_usd: 0.01, output: { passed: true },
      });
      assert(sc.stage && typeof sc.stage.id === 'string', `no stage.id in ${JSON.stringify(sc)}`);
      assert(sc.stage.workflow_id === wid, `stage.workflow_id=${sc.stage.workflow_id}`);
      assert(sc.stage.name === 'attempt', `stage.name=${sc.stage.name}`);
      assert(sc.stage.model === 'ts-model', `stage.model=${sc.stage.model}`);
      assert(sc.workflow && sc.workflow.id === wid, 'workflow missing or wrong id');
      assert(sc.workflow.stages === 1, `workflow.stages=${sc.workflow.stages}`);
      assert(text.includes('attempt') && text.includes(wid), `text "${text}" lacks stage name or workflow id`);
      return `${sc.stage.id}, workflow ${sc.workflow.status}`;
    });
    await check('workflow get', async () => {
      const { sc, text } = await call(client, 'workflow', { action: 'get', workflow_id: wid });
      assert(sc.workflow && sc.workflow.id === wid, 'wrong workflow');
      assert(Array.isArray(sc.stages) && sc.stages.length === 1, `stages=${JSON.stringify(sc.stages)}`);
      assert(Array.isArray(sc.tasks), 'no tasks array');
      assert(text.includes(wid), `text "${text}" lacks id`);
      return `${sc.stages.length} stage(s)`;
    });
  }

  if (!has('task')) skip('task');
  else {
    let tid = null;
    await check('task create', async () => {
      const title = `ts task ${RUN}`;
      const args = { action: 'create', title, instruction: 'check the TS client', project: `ts-${RUN}` };
      if (wid) args.workflow_id = wid;
      const { sc, text } = await call(client, 'task', args);
      const tk = sc.task;
      assert(tk && typeof tk.id === 'string' && tk.id, `no task.id in ${JSON.stringify(sc)}`);
      assert(tk.status === 'open', `status=${tk.status}`);
      assert(tk.title === title, `title=${tk.title}`);
      assert(text.includes(tk.id), `text "${text}" lacks id ${tk.id}`);
      tid = tk.id;
      return tid;
    });
    if (tid) {
      await check('task get', async () => {
        const { sc, text } = await call(client, 'task', { action: 'get', task_id: tid });
        assert(sc.task && sc.task.id === tid, `wrong task in ${JSON.stringify(sc)}`);
        assert(sc.task.status === 'open', `status=${sc.task.status}`);
        assert(text.includes(tid), `text "${text}" lacks id`);
      });
    }
  }

  if (!has('checkpoint')) skip('checkpoint');
  else {
    const project = `ts-${RUN}`;
    const objective = `Verify the TS SDK client ${RUN}`;
    let cid = null;
    await check('checkpoint save', async () => {
      const { sc, text } = await call(client, 'checkpoint', {
        action: 'save', agent: 'ts-client-test', project, objective,
        blockers: ['none so far'], recent_actions: ['created a workflow', 'wrote a stage'],
      });
      const cp = sc.checkpoint;
      assert(cp && typeof cp.id === 'string' && cp.id, `no checkpoint.id in ${JSON.stringify(sc)}`);
      assert(typeof cp.hash === 'string' && cp.hash, 'no checkpoint.hash');
      assert(sc.created === true, `created=${sc.created}`);
      assert(text.includes(cp.id) || text.includes(cp.hash.slice(0, 8)), `text "${text}" names neither id nor hash`);
      cid = cp.id;
      return cid;
    });
    await check('checkpoint handoff', async () => {
      const { sc, text } = await call(client, 'checkpoint', { action: 'handoff', agent: 'ts-client-test', project });
      assert(typeof sc.handoff === 'string', `no handoff string in ${JSON.stringify(sc).slice(0, 300)}`);
      assert(sc.handoff.startsWith('# Recovery Checkpoint'), `handoff starts "${sc.handoff.slice(0, 40)}"`);
      assert(sc.handoff.includes(objective), 'handoff lacks the saved objective');
      assert(text === sc.handoff, 'text content differs from structuredContent.handoff');
      return `${Buffer.byteLength(sc.handoff)} bytes of Markdown`;
    });
  }

  await check('every tool result was validated by the SDK against its outputSchema', async () => {
    assert(unvalidatedCalls.length === 0,
      `no outputSchema validator (tools/list not accepted by the SDK, or no outputSchema) for: ${unvalidatedCalls.join(', ')}`);
    return `${validatedCalls.length} calls`;
  });

  await t.terminateSession().catch(() => {});
  await client.close().catch(() => {});
}

// A wrong key must be refused (HTTP 401) before any session exists.
async function expectAuthError(name, k) {
  await check(name, async () => {
    const c = new Client({ name: 'vaultline-ts-client-test-badkey', version: '0.1.0' });
    const bt = k === null ? new StreamableHTTPClientTransport(new URL(url)) : transport(k);
    let err = null;
    try { await c.connect(bt); } catch (e) { err = e; }
    await c.close().catch(() => {});
    assert(err, 'connected without a valid key');
    const msg = errText(err);
    assert(err.code === 401 || /401|unauthori[sz]ed/i.test(msg), `unexpected error: ${msg}`);
    return msg.split('\n')[0].slice(0, 120);
  });
}
await expectAuthError('wrong key is refused', `vl_wrong_${RUN}`);
await expectAuthError('missing key is refused', null);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
