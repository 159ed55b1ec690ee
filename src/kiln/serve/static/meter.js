// Time to first token and tokens/s of one stream, shown live in a status bar.

export class Meter {
  constructor(els) {
    this.els = els; // {ttft, tps, tokens}
    this.reset();
  }
  reset() {
    this.t0 = performance.now();
    this.first = null;
    this.last = null;
    this.n = 0;
    this.pending = false;
    this.render();
  }
  token() {
    const now = performance.now();
    if (this.first === null) this.first = now;
    this.last = now;
    this.n += 1;
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }
  rate() {
    if (!this.n) return null;
    const decode = this.last - this.first;
    // (n - 1) tokens over the time between the first and the last; when a fast server's tokens arrive
    // in one read that span is ~0, so fall back to all tokens over the time since the request.
    if (this.n > 1 && decode >= 20) return ((this.n - 1) * 1000) / decode;
    return (this.n * 1000) / Math.max(1, this.last - this.t0);
  }
  render() {
    const { ttft, tps, tokens } = this.els;
    ttft.textContent = this.first === null ? "–" : `${Math.round(this.first - this.t0)} ms`;
    const r = this.rate();
    tps.textContent = r === null ? "–" : r >= 100 ? r.toFixed(0) : r.toFixed(1);
    tokens.textContent = String(this.n);
  }
}
