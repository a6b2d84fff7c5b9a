// Compares the schema wrangler's local D1 reports with the one `vaultline migrate`
// creates. Prints a diff and exits 1 on any difference.
//
// Usage: node compare.js D1_EXECUTE_JSON VAULTLINE_DB MIGRATIONS_DIR
//
// D1_EXECUTE_JSON holds two statements' results: sqlite_master, then the names in
// d1_migrations, which must be every file in MIGRATIONS_DIR, in order. Both sides are `select type, name, tbl_name, sql from sqlite_master` rows. Rows are
// keyed by type and name; SQL is compared with whitespace runs collapsed. Ignored:
// D1's bookkeeping (`d1_migrations`, `_cf_*`), SQLite's own objects (`sqlite_*`,
// e.g. sqlite_sequence and the autoindexes behind UNIQUE constraints, which the
// CREATE TABLE text already covers), and vaultline's `schema_migrations`, its
// counterpart of `d1_migrations`.
"use strict";
const fs = require("fs");
const { DatabaseSync } = require("node:sqlite");

const IGNORED = [/^d1_migrations$/, /^_cf_/i, /^sqlite_/i, /^schema_migrations$/];
const ignored = (r) => IGNORED.some((re) => re.test(r.name) || re.test(r.tbl_name));
const norm = (sql) => (sql == null ? null : sql.replace(/\s+/g, " ").trim());

function keyed(rows, side) {
  const map = new Map();
  for (const r of rows) {
    if (ignored(r)) continue;
    const key = `${r.type} ${r.name}`;
    if (map.has(key)) throw new Error(`${side}: ${key} appears twice`);
    map.set(key, { tbl_name: r.tbl_name, sql: norm(r.sql) });
  }
  return map;
}

function main() {
  const [d1Json, dbPath, migrationsDir] = process.argv.slice(2);
  if (!d1Json || !dbPath || !migrationsDir) {
    console.error("usage: node compare.js D1_EXECUTE_JSON VAULTLINE_DB MIGRATIONS_DIR");
    process.exit(2);
  }
  // `wrangler d1 execute --json` prints an array with one entry per statement.
  const parsed = JSON.parse(fs.readFileSync(d1Json, "utf8"));
  if (!Array.isArray(parsed) || parsed.length !== 2)
    throw new Error(`expected two statement results from wrangler, got: ${JSON.stringify(parsed).slice(0, 300)}`);
  const d1Rows = parsed[0].results ?? [];
  const applied = (parsed[1].results ?? []).map((r) => r.name);
  const files = fs.readdirSync(migrationsDir).filter((f) => f.endsWith(".sql")).sort();
  if (JSON.stringify(applied) !== JSON.stringify(files))
    throw new Error(
      `D1 applied [${applied.join(", ")}] but ${migrationsDir} holds [${files.join(", ")}]`,
    );
  const db = new DatabaseSync(dbPath, { readOnly: true });
  const vlRows = db.prepare("select type, name, tbl_name, sql from sqlite_master").all();
  db.close();
  if (d1Rows.length === 0) throw new Error("wrangler reported no schema rows at all");

  const d1 = keyed(d1Rows, "D1");
  const vl = keyed(vlRows, "vaultline");
  const problems = [];
  for (const [key, v] of vl) {
    const d = d1.get(key);
    if (!d) problems.push(`only in vaultline: ${key}\n    ${v.sql}`);
    else if (d.sql !== v.sql || d.tbl_name !== v.tbl_name)
      problems.push(`differs: ${key}\n    vaultline: ${v.sql}\n    D1:        ${d.sql}`);
  }
  for (const [key, d] of d1) {
    if (!vl.has(key)) problems.push(`only in D1: ${key}\n    ${d.sql}`);
  }
  const counts = {};
  for (const key of vl.keys()) counts[key.split(" ")[0]] = (counts[key.split(" ")[0]] ?? 0) + 1;
  const summary = Object.entries(counts)
    .sort()
    .map(([t, n]) => `${n} ${t === "index" ? "indexes" : t + "s"}`)
    .join(", ");
  if (problems.length > 0) {
    console.error(`d1check: the schemas differ in ${problems.length} object(s):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log(`d1check: D1 applied all ${files.length} migrations; its schema matches vaultline's (${summary})`);
}

try {
  main();
} catch (e) {
  console.error(`d1check: ${e.message}`);
  process.exit(1);
}
