/**
 * A progress line on stderr, only when stderr is a terminal: redrawn in
 * place at most every 100 ms and erased when done.
 */
export class Progress {
  readonly #on: boolean;
  #last = 0;
  #shown = false;

  constructor(on: boolean = process.stderr.isTTY === true) {
    this.#on = on;
  }

  /** Shows `text` (now when `force`, else when the last redraw is old enough). */
  show(text: string, force = false): void {
    if (!this.#on) return;
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    this.#shown = true;
    process.stderr.write(`\r\x1b[2K${text}`);
  }

  done(): void {
    if (this.#on && this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}

/** Entries from which `keys` and `verify` show progress on a terminal. */
export const LARGE_ENTRIES = 5000;
/** Segment size from which they do (bytes). */
export const LARGE_BYTES = 256 * 1024 * 1024;
