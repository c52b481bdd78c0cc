/**
 * The migrations page: static HTML, CSS and ES modules, no build step. uPlot
 * (the chart) is served from node_modules, so the page has no third-party
 * origin and helmet's default Content-Security-Policy holds unchanged.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';

const here = dirname(fileURLToPath(import.meta.url));
/** api/public/page next to this file (in a build the Dockerfile copies it beside dist/api). */
export const PAGE_DIR = join(here, 'public', 'page');
// The package's main file sits in dist/, beside the ES module and the style sheet.
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));

const assets = { index: false, fallthrough: false, maxAge: '1h', immutable: false } as const;

/** Assets carry nothing secret: public, so the login page can share the style sheet. */
export function addPageAssets(app: Express): void {
  app.use('/ui/vendor', express.static(UPLOT_DIR, { ...assets, maxAge: '1d' }));
  app.use('/ui', express.static(PAGE_DIR, assets));
}

/** The page itself needs a viewer: mounted after the authentication guards. */
export function addPageRoute(app: Express): void {
  app.get('/', (_req, res) => {
    res.setHeader('cache-control', 'no-cache');
    res.sendFile(join(PAGE_DIR, 'index.html'));
  });
}
