// ts-echo: the reference point for vaultline's benchmarks. The official MCP
// TypeScript SDK (McpServer + StreamableHTTPServerTransport, stateful sessions)
// serving exactly one tool, `echo` ({message: string} -> text), the same tool
// as tools/bare-echo. Binds 127.0.0.1 only.
//
// Usage: node server.mjs [PORT]        (or PORT=... node server.mjs; 0 = pick a free port)
// Prints "listening on 127.0.0.1:PORT" on stdout once it accepts connections.
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const HOST = '127.0.0.1';
const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`ts-echo: bad port ${process.argv[2] ?? process.env.PORT}`);
  process.exit(2);
}

function newServer() {
  const server = new McpServer({ name: 'ts-echo', version: '0.0.0' });
  server.registerTool(
    'echo',
    { description: 'Echo the message back', inputSchema: { message: z.string() } },
    async ({ message }) => ({ content: [{ type: 'text', text: message }] }),
  );
  return server;
}

/** session id -> transport */
const transports = new Map();

const app = createMcpExpressApp({ host: HOST });

app.post('/mcp', async (req, res) => {
  try {
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? transports.get(sid) : undefined;
    if (!transport) {
      if (sid || !isInitializeRequest(req.body)) {
        res.status(sid ? 404 : 400).json({
          jsonrpc: '2.0',
          error: { code: -32000, message: sid ? 'Session not found' : 'Bad Request: no session' },
          id: null,
        });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) transports.delete(transport.sessionId);
      };
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    console.error('ts-echo: request failed', err);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal error' }, id: null });
    }
  }
});

async function sessionRequest(req, res) {
  const sid = req.headers['mcp-session-id'];
  const transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    res.status(sid ? 404 : 400).send(sid ? 'Session not found' : 'Missing session id');
    return;
  }
  await transport.handleRequest(req, res);
}
app.get('/mcp', sessionRequest);
app.delete('/mcp', sessionRequest);

const httpServer = app.listen(port, HOST, (err) => {
  if (err) {
    console.error('ts-echo: listen failed', err);
    process.exit(1);
  }
  const addr = httpServer.address();
  console.log(`listening on ${addr.address}:${addr.port}`);
});
// Same as the Rust servers: no Nagle delay on replies.
httpServer.on('connection', (socket) => socket.setNoDelay(true));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    httpServer.close();
    process.exit(0);
  });
}
