// better-sqlite3 in WAL mode on /dev/shm, prepared statements.
import Database from 'better-sqlite3';

export const shared = true;
export function open({ path }) {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID');
  const get = db.prepare('SELECT v FROM kv WHERE k = ?').pluck();
  const put = db.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
  const encode = (v) => (typeof v === 'string' || Buffer.isBuffer(v) ? v : JSON.stringify(v));
  return {
    get: (k) => get.get(k),
    set: (k, v) => put.run(k, encode(v)),
    close: () => db.close(),
  };
}
