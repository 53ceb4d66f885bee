/**
 * The status server of `shmcache serve`: node:http, the page and its files
 * served from memory, a JSON API over the watched caches, and /metrics.
 * Routes: DESIGN §9 and docs/operations.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { entryInfo, entryView, scanWindow } from '../cli/inspect';
import { hitRatio } from '../cli/stats';
import { createMetrics } from './metrics';
import { CacheSet, describeError, type Watched } from './sampler';

export interface StatusServerOptions {
  /** Segment files and folders of `*.shm` files. */
  targets: string[];
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 9464; 0 picks a free port. */
  port?: number;
  /** The bearer token of the mutations. */
  token: string;
  /** Where warnings go (a name taken twice, a folder that cannot be listed). */
  warn?: (message: string) => void;
}

export interface StatusServer {
  server: Server;
  caches: CacheSet;
  /** http://host:port/ */
  url: string;
  close(): Promise<void>;
}

/** The page's files, read once at start (so that serving them never touches the file system). */
interface Asset {
  type: string;
  body: Buffer;
}

function loadAssets(): Map<string, Asset> {
  const dir = join(__dirname, '..', '..', 'src', 'server', 'static');
  const uplot = join(require.resolve('uplot/package.json'), '..', 'dist');
  const files: [string, string, string][] = [
    ['/', join(dir, 'index.html'), 'text/html; charset=utf-8'],
    ['/static/app.js', join(dir, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/static/app.css', join(dir, 'app.css'), 'text/css; charset=utf-8'],
    ['/static/uPlot.iife.min.js', join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/static/uPlot.min.css', join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  return new Map(files.map(([route, file, type]) => [route, { type, body: readFileSync(file) }]));
}

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const MAX_BODY = 16 * 1024;
const MAX_LIMIT = 1000;
const KEYS_FRESH_MS = 2000;
/** Key lists kept at once (each at most MAX_WINDOW keys). */
const KEY_LISTS = 16;
/** How deep the keys route pages (offset + limit): beyond, narrow the prefix. */
const MAX_WINDOW = 100_000;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Whether `host` names the loopback interface. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

export function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const host = options.host ?? '127.0.0.1';
  const assets = loadAssets();
  const caches = new CacheSet(options.targets, options.warn);
  const registry = createMetrics(caches);
  const tokenHash = sha256(options.token);
  const loopbackOnly = isLoopback(host);
  const configuredHost = host.replace(/^\[|\]$/g, '').toLowerCase();
  /**
   * The first n sorted keys per cache and prefix (a bounded window, not
   * every key), kept for KEYS_FRESH_MS so that paging is cheap and stable;
   * at most KEY_LISTS of them. A scan runs in slices (scanWindow), and
   * requests for the same list share one scan.
   */
  const keyLists = new Map<string, { at: number; n: number; keys: string[]; total: number }>();
  const scans = new Map<string, Promise<{ keys: string[]; total: number }>>();
  const keyWindow = async (w: Watched, prefix: string, n: number): Promise<{ keys: string[]; total: number }> => {
    const id = `${w.name}\0${prefix}`;
    const now = Date.now();
    for (const [k, v] of keyLists) if (now - v.at > KEYS_FRESH_MS) keyLists.delete(k);
    const have = keyLists.get(id);
    if (have && have.n >= n) return have;
    // A window of at least a few pages, so that the next page needs no scan.
    const want = Math.min(MAX_WINDOW, Math.max(n, 4 * MAX_LIMIT));
    const scanId = `${id}\0${want}`;
    let scan = scans.get(scanId);
    if (!scan) {
      scan = w.use((cache) => scanWindow(cache, prefix, want)).finally(() => scans.delete(scanId));
      scans.set(scanId, scan);
    }
    const r = await scan;
    keyLists.delete(id);
    keyLists.set(id, { at: Date.now(), n: want, ...r });
    while (keyLists.size > KEY_LISTS) keyLists.delete(keyLists.keys().next().value!);
    return r;
  };
  const forget = (name: string): void => {
    for (const k of keyLists.keys()) if (k.startsWith(`${name}\0`)) keyLists.delete(k);
  };

  const authorized = (req: IncomingMessage): boolean => {
    const m = /^bearer +(\S+)$/i.exec(req.headers.authorization ?? ''); // the scheme is case-insensitive (RFC 9110)
    // Hashes of equal length: the comparison takes the same time whatever
    // the token's length or how much of it matches.
    return m !== null && timingSafeEqual(sha256(m[1]!), tokenHash);
  };

  const readJson = async (req: IncomingMessage): Promise<unknown> => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) throw new HttpError(413, 'TOO_LARGE', `a body of at most ${MAX_BODY} bytes`);
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (n > MAX_BODY) throw new HttpError(413, 'TOO_LARGE', `a body of at most ${MAX_BODY} bytes`);
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return {};
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json');
    try {
      return JSON.parse(text);
    } catch {
      throw new HttpError(400, 'BAD_JSON', 'the body is not valid JSON');
    }
  };

  const cacheOf = (name: string): Watched => {
    const w = caches.get(name);
    if (!w) throw new HttpError(404, 'NO_SUCH_CACHE', `no cache named ${JSON.stringify(name)}`);
    return w;
  };

  const intParam = (url: URL, name: string, dflt: number, min: number, max: number): number => {
    const raw = url.searchParams.get(name);
    if (raw === null || raw === '') return dflt;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new HttpError(400, 'BAD_PARAMETER', `Expected an integer from ${min} to ${max} for ${name} but received ${JSON.stringify(raw)}`);
    }
    return n;
  };

  const cacheSummary = (w: Watched) => ({ name: w.name, path: w.path, error: w.error ?? null });

  type Handler = (w: Watched, url: URL, req: IncomingMessage) => unknown | Promise<unknown>;
  const cacheRoutes: Record<string, { method: 'GET' | 'POST'; handle: Handler }> = {
    stats: {
      method: 'GET',
      handle: (w, url) => ({
        ...cacheSummary(w),
        stats: w.last ? { ...w.last, hitRatio: hitRatio(w.last) } : null,
        damage: w.damage ?? null,
        sampledAt: w.lastAt || null,
        series: w.seriesSince(intParam(url, 'since', 0, 0, Number.MAX_SAFE_INTEGER)),
      }),
    },
    keys: {
      method: 'GET',
      handle: async (w, url) => {
        const prefix = url.searchParams.get('prefix') ?? '';
        const limit = intParam(url, 'limit', 50, 1, MAX_LIMIT);
        const offset = intParam(url, 'offset', 0, 0, MAX_WINDOW - limit);
        const list = await keyWindow(w, prefix, offset + limit);
        return w.use((cache) => {
          const keys = [];
          for (const key of list.keys.slice(offset, offset + limit)) {
            const info = entryInfo(cache, key);
            if (info !== undefined) keys.push({ key, ...info });
          }
          return { name: w.name, prefix, total: list.total, offset, limit, keys };
        });
      },
    },
    entry: {
      method: 'GET',
      handle: (w, url) => {
        const key = url.searchParams.get('key');
        if (key === null || key === '') throw new HttpError(400, 'BAD_PARAMETER', 'Expected a key for key but received none');
        const view = w.use((cache) => entryView(cache, key));
        if (view === undefined) throw new HttpError(404, 'NO_SUCH_KEY', `no live entry ${JSON.stringify(key)}`);
        return view;
      },
    },
    delete: {
      method: 'POST',
      handle: async (w, _url, req) => {
        const body = await readJson(req);
        const key = (body as { key?: unknown })?.key;
        if (typeof key !== 'string' || key === '') throw new HttpError(400, 'BAD_PARAMETER', 'Expected a JSON body { "key": "..." }');
        const deleted = w.mutate((cache) => cache.delete(key));
        forget(w.name);
        return { key, deleted };
      },
    },
    clear: {
      method: 'POST',
      handle: async (w, _url, req) => {
        await readJson(req);
        const cleared = w.mutate((cache) => {
          const n = cache.stats().entries;
          cache.clear();
          return n;
        });
        forget(w.name);
        return { name: w.name, cleared };
      },
    },
  };

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
  const sendJson = (res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void =>
    send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), { 'Cache-Control': 'no-store', ...headers });

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    // DNS rebinding: a page from elsewhere whose name now points at
    // 127.0.0.1 would send its own Host.
    const hostHeader = req.headers.host ?? '';
    const hostname = hostHeader.replace(/:\d+$/, '');
    if (loopbackOnly && !isLoopback(hostname)) throw new HttpError(403, 'BAD_HOST', 'this server answers only to a loopback host name');
    // Bound elsewhere: the configured host, a loopback name, or an IP
    // address (a rebound name is a name, never an address literal).
    if (!loopbackOnly && !isLoopback(hostname) && hostname.toLowerCase() !== configuredHost && isIP(hostname.replace(/^\[|\]$/g, '')) === 0) {
      throw new HttpError(403, 'BAD_HOST', 'this server answers only to its --host name, an IP address or a loopback name');
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').slice(1);
    let segments: string[];
    try {
      segments = parts.map((p) => decodeURIComponent(p));
    } catch {
      throw new HttpError(400, 'BAD_PATH', 'bad percent-encoding in the path');
    }
    const allow = (m: string, allowed: string): void => {
      if (m !== allowed) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `use ${allowed}`, { Allow: allowed === 'GET' ? 'GET, HEAD' : allowed });
    };

    const asset = assets.get(url.pathname);
    if (asset) {
      allow(method, 'GET');
      return send(res, 200, asset.type, asset.body, { 'Cache-Control': 'no-cache' });
    }
    if (url.pathname === '/metrics') {
      allow(method, 'GET');
      return send(res, 200, registry.contentType, await registry.metrics(), { 'Cache-Control': 'no-store' });
    }
    if (url.pathname === '/api/caches') {
      allow(method, 'GET');
      return sendJson(res, 200, caches.list().map(cacheSummary));
    }
    if (segments.length === 4 && segments[0] === 'api' && segments[1] === 'caches') {
      const r = Object.hasOwn(cacheRoutes, segments[3]!) ? cacheRoutes[segments[3]!] : undefined;
      if (r) {
        allow(method, r.method);
        if (r.method === 'POST') {
          if (!authorized(req)) {
            throw new HttpError(401, 'UNAUTHORIZED', 'this needs Authorization: Bearer <token> (printed by shmcache serve at start)', {
              'WWW-Authenticate': 'Bearer realm="shmcache"',
            });
          }
          // A browser sends Origin on a cross-site POST: refuse one from elsewhere.
          const origin = req.headers.origin;
          if (origin !== undefined && origin !== 'null') {
            let same = false;
            try {
              same = new URL(origin).host === hostHeader;
            } catch {}
            if (!same) throw new HttpError(403, 'BAD_ORIGIN', 'a request from another origin');
          }
        }
        const w = cacheOf(segments[2]!);
        return sendJson(res, 200, await r.handle(w, url, req));
      }
    }
    if (url.pathname === '/favicon.ico') return send(res, 204, 'text/plain', '');
    throw new HttpError(404, 'NOT_FOUND', `no route ${url.pathname}`);
  };

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    route(req, res).catch((err: unknown) => {
      if (res.headersSent) return res.destroy();
      if (err instanceof HttpError) {
        if (err.status === 413) res.setHeader('Connection', 'close');
        return sendJson(res, err.status, { error: err.code, message: err.message }, err.headers);
      }
      const { code, message } = describeError(err);
      // A bad key from the caller is theirs; anything else is the cache's.
      const status = code === 'ERR_SHMCACHE_INVALID_KEY' ? 400 : 500;
      sendJson(res, status, { error: code, message });
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 9464, host, () => {
      server.off('error', reject);
      caches.start();
      const addr = server.address() as AddressInfo;
      const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      resolve({
        server,
        caches,
        url: `http://${shown}:${addr.port}/`,
        close: () =>
          new Promise<void>((done) => {
            caches.close();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
