// Parses every query of the legato-traceql accepted corpus with Grafana's own TraceQL grammar
// (@grafana/lezer-traceql, the parser behind Grafana's query editor) and fails if any of them
// produces an error node. Queries Grafana's grammar does not know yet are listed, with the
// reason, in lezer-known-gaps.txt.
//
// Usage: npm install && node check.mjs [--show-tree "query"]
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parser } from '@grafana/lezer-traceql';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const corpusPath = join(repoRoot, 'crates', 'legato-traceql', 'tests', 'corpus', 'accepted.txt');
const gapsPath = join(here, 'lezer-known-gaps.txt');

/** One query per line; blank lines and lines starting with '#' are ignored. */
function readQueries(path) {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((line, i) => ({ line: i + 1, query: line.replace(/\r$/, '') }))
    .filter(({ query }) => query.trim() !== '' && !query.trimStart().startsWith('#'));
}

/** Returns the positions of all error nodes in the parse tree of `query`. */
function errorPositions(query) {
  const tree = parser.parse(query);
  const errors = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return errors;
}

if (process.argv[2] === '--show-tree') {
  const query = process.argv[3] ?? '';
  console.log(parser.parse(query).toString());
  console.log(`errors at: ${JSON.stringify(errorPositions(query))}`);
  process.exit(0);
}

const queries = readQueries(corpusPath);
const gaps = new Set(readQueries(gapsPath).map(({ query }) => query));
const corpusSet = new Set(queries.map(({ query }) => query));

const failed = [];
let skipped = 0;
const staleGaps = [];
for (const { line, query } of queries) {
  const errors = errorPositions(query);
  if (gaps.has(query)) {
    skipped += 1;
    if (errors.length === 0) staleGaps.push(query);
    continue;
  }
  if (errors.length > 0) failed.push({ line, query, errors });
}

const corpusName = relative(repoRoot, corpusPath);
for (const { line, query, errors } of failed) {
  console.log(`FAIL ${corpusName}:${line}: ${query}`);
  console.log(`     error node(s) at offset(s) ${errors.join(', ')}`);
}
for (const query of staleGaps) {
  console.log(`note: listed in lezer-known-gaps.txt but now parses cleanly: ${query}`);
}
for (const query of gaps) {
  if (!corpusSet.has(query)) console.log(`note: lezer-known-gaps.txt entry is not in the corpus: ${query}`);
}
const checked = queries.length - skipped;
console.log(`lezer: ${checked} queries checked, ${failed.length} failed (${skipped} known gaps skipped)`);
process.exit(failed.length === 0 ? 0 : 1);
