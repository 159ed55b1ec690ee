// The sampling explainer's arithmetic: the server's sampler (kiln.generate.sampling.process_logits) redone
// in the page on the next-token distribution, so the bars follow the sliders without asking the server.

/**
 * Apply temperature -> top-k -> top-p -> min-p to the next-token distribution, as the server's sampler
 * does (kiln.generate.sampling.process_logits). `groups` are [{logit, count}] sorted by logit, highest
 * first; a group of count > 1 stands for the tokens outside the top_n returned, modelled as equally likely.
 * Returns, per group, how many of its tokens are kept and each kept token's final probability.
 */
export function applySampling(groups, vocab, { temperature, topK, topP, minP }) {
  const kept = groups.map((g) => g.count);
  const counts = { vocab, topK: vocab, topP: vocab, minP: vocab };
  const total = () => kept.reduce((a, b) => a + b, 0);
  if (temperature === 0) {
    // greedy: the argmax takes all the mass (the filters cannot change it)
    const each = groups.map((_, i) => (i === 0 ? 1 : 0));
    return { each, kept: groups.map((_, i) => (i === 0 ? 1 : 0)), counts: { vocab, topK: 1, topP: 1, minP: 1 }, greedy: true };
  }
  const x = groups.map((g) => g.logit / temperature);
  // top-k: keep the k highest (ties with the k-th kept, like the server)
  if (topK > 0 && topK < vocab) {
    let seen = 0;
    let kth = -Infinity;
    for (let i = 0; i < groups.length; i++) {
      if (seen + groups[i].count >= topK) {
        kth = x[i];
        break;
      }
      seen += groups[i].count;
    }
    let before = 0;
    for (let i = 0; i < groups.length; i++) {
      if (x[i] < kth) kept[i] = 0;
      else if (groups[i].count > 1) kept[i] = Math.min(groups[i].count, Math.max(0, topK - before));
      before += kept[i];
    }
  }
  counts.topK = total();
  const softmax = () => {
    const m = Math.max(...x.filter((_, i) => kept[i] > 0));
    const w = x.map((v, i) => (kept[i] > 0 ? Math.exp(v - m) : 0));
    const z = w.reduce((a, v, i) => a + v * kept[i], 0);
    return w.map((v) => v / z); // probability of each single token of the group
  };
  // top-p: the smallest set of most probable tokens whose mass reaches p; the first is always kept
  if (topP < 1) {
    const each = softmax();
    let mass = 0;
    let first = true;
    for (let i = 0; i < groups.length; i++) {
      if (!kept[i]) continue;
      if (groups[i].count === 1) {
        if (!(mass < topP) && !first) kept[i] = 0;
        mass += each[i] * kept[i];
      } else {
        const need = mass < topP ? Math.ceil((topP - mass) / each[i] - 1e-9) : 0;
        kept[i] = Math.min(kept[i], Math.max(first ? 1 : 0, need));
        mass += each[i] * kept[i];
      }
      first = false;
    }
  }
  counts.topP = total();
  // min-p: keep tokens with p >= min_p * p_max, i.e. x - x_max >= log(min_p)
  if (minP > 0) {
    const m = Math.max(...x.filter((_, i) => kept[i] > 0));
    const cut = Math.log(minP);
    for (let i = 0; i < groups.length; i++) if (kept[i] && x[i] - m < cut) kept[i] = 0;
  }
  counts.minP = total();
  return { each: softmax().map((p, i) => (kept[i] ? p : 0)), kept, counts, greedy: false };
}

