// Turns the engine's per-token callback (push) into what an async iterator needs (pull). Pieces
// are a few bytes each, so buffering them while the consumer is slow needs no backpressure.
export class Channel {
  #items = [];
  #waiting = null;
  #end = null; // {done: true, value} or {error}

  push(value) {
    if (this.#end) return;
    if (this.#waiting) this.#settle({ done: false, value });
    else this.#items.push(value);
  }

  close(value) {
    this.#finish({ done: true, value });
  }

  fail(error) {
    this.#finish({ error });
  }

  next() {
    if (this.#items.length) return Promise.resolve({ done: false, value: this.#items.shift() });
    if (this.#end) return this.#end.error ? Promise.reject(this.#end.error) : Promise.resolve(this.#end);
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  #finish(end) {
    if (this.#end) return;
    this.#end = end;
    if (this.#waiting && !this.#items.length) {
      if (end.error) this.#reject(end.error);
      else this.#settle(end);
    }
  }

  #settle(result) {
    const { resolve } = this.#waiting;
    this.#waiting = null;
    resolve(result);
  }

  #reject(error) {
    const { reject } = this.#waiting;
    this.#waiting = null;
    reject(error);
  }
}
