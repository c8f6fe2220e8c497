/**
 * The fine-tuning page under `/tune/` of `lmtune serve`: the files of src/web/build.ts, built once on the
 * first request and kept in memory, sent with the cross-origin isolation headers that threaded wasm needs.
 */
import type { ServerResponse } from 'node:http';
import { contentType, fileBytes, WEB_HEADERS, webFiles, type WebFile } from '../web/build.ts';

export const WEB_PREFIX = '/tune/';

export interface WebApp {
  /** answers a request under WEB_PREFIX; false when the path is not the app's */
  handle(pathname: string, res: ServerResponse): Promise<boolean>;
}

export function webApp(): WebApp {
  let files: Promise<Map<string, WebFile>> | null = null;
  const cache = new Map<string, Uint8Array>();
  return {
    async handle(pathname, res) {
      if (pathname === WEB_PREFIX.slice(0, -1)) {
        res.writeHead(302, { location: WEB_PREFIX }).end();
        return true;
      }
      if (!pathname.startsWith(WEB_PREFIX)) return false;
      const name = pathname.slice(WEB_PREFIX.length) || 'index.html';
      files ??= webFiles();
      let all: Map<string, WebFile>;
      try {
        all = await files;
      } catch (e) {
        files = null; // a failed build is retried by the next request
        throw e;
      }
      const f = all.get(name);
      if (!f) return false;
      let body = cache.get(name);
      if (!body) {
        body = fileBytes(f);
        // the wasm runtime (14 MB) and the model are read once; the page's own files stay fresh for development
        if (!name.endsWith('.html') && name !== 'page.js') cache.set(name, body);
      }
      res.writeHead(200, { 'content-type': contentType(name), 'content-length': String(body.length), 'cache-control': 'no-store', ...WEB_HEADERS });
      res.end(body);
      return true;
    },
  };
}
