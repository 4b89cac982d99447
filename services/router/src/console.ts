import type Router from '@koa/router';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Shipped in the package beside dist/, so the router serves it with no build step of its own. */
const STATIC_DIR = join(__dirname, '..', 'static', 'console');

/**
 * The console's files, by the path they are served at. A fixed list, not a directory lookup: no
 * request path is ever joined onto the file system, so none can reach outside it. `/` is the only
 * path at the root; the assets live under `/console/`, which no API route uses.
 */
const FILES: ReadonlyArray<{ path: string; file: string; type: string }> = [
  { path: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { path: '/console/console.js', file: 'console.js', type: 'text/javascript; charset=utf-8' },
  { path: '/console/console.css', file: 'console.css', type: 'text/css; charset=utf-8' },
];

/**
 * Only this origin's script and style files, fetches to this origin, no inline code, no plugins,
 * no framing (the failover button must not be clickjacked), no form posts anywhere.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The web console at `/`: static files read once at start (they are small and never change while running). */
export function addConsoleRoutes(router: Router): void {
  for (const { path, file, type } of FILES) {
    const body = readFileSync(join(STATIC_DIR, file));
    router.get(path, (ctx) => {
      ctx.set('content-security-policy', CONSOLE_CSP);
      ctx.set('x-content-type-options', 'nosniff');
      ctx.set('referrer-policy', 'no-referrer');
      // A router upgraded in place must not leave a console of the old version in a browser cache.
      ctx.set('cache-control', 'no-cache');
      ctx.type = type;
      ctx.body = body;
    });
  }
}
