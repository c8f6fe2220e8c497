/**
 * JSON.parse keeps the last of two equal keys without a word, so a file with `"dtype"` twice (or a
 * tensor listed twice) reads as whichever came last. This scan finds the first key repeated within one
 * object, so readers can refuse such files naming the key. It expects text JSON.parse accepted.
 */
export interface DuplicateKey {
  key: string;
  /** the enclosing object's keys, outermost first ("" for the top level) */
  path: string[];
}

export function duplicateKey(text: string): DuplicateKey | null {
  type Frame = { obj: boolean; keys: Set<string>; expectKey: boolean; key: string };
  const stack: Frame[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top?.obj && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return { key, path: stack.slice(0, -1).map((f) => f.key) };
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') stack.push({ obj: c === '{', keys: new Set(), expectKey: c === '{', key: '' });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.obj) top.expectKey = true;
    }
    i++;
  }
  return null;
}
