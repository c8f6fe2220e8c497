/**
 * What an architecture's forward function receives: the graph, its weights by HF name, the batch
 * inputs, and the adapter hooks (LoRA on chosen linear layers, prefix key/value slots in attention).
 * Family forwards (families/*.ts) stay plain top-to-bottom code; PEFT enters only through `linear` and `attend`.
 */
import { LmtuneError } from '../util/errors.ts';
import { type Graph, type Value, nn } from '../engine/index.ts';
import type { ModelConfig } from './config.ts';
import type { WeightStore } from './weights.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { loraParts, prependPrefix } from '../peft/forward.ts';

export interface ForwardInputs {
  /** [B, T] i64 */
  ids: Value;
  /** [B, T] i64: index into a learned position table (family-specific offsets already applied) */
  positions: Value;
  /** [B, 1, T, P + T] f32 additive attention bias */
  bias: Value;
  /** [B, 1, T, rotDim] rotary tables (rotary families only) */
  cos?: Value;
  sin?: Value;
}

export class ForwardContext {
  private readonly params = new Map<string, Value>();
  /** per-layer attention keys/values after rotary, [B, Hkv, T, D], when `captureKv` is set */
  readonly capturedKv: { k: Value; v: Value }[] = [];
  captureKv = false;
  /** cached keys/values per layer [B, Hkv, P, D] prepended to each layer's keys (generation) */
  past: { k: Value; v: Value }[] | null = null;
  private layer = 0;
  /**
   * Per LoRA module, its input x and the LoRA branch's u = x Aᵀ and v = u Bᵀ (graph values; recording
   * them adds no node). A head differentiates with respect to u and v to get each LoRA matrix's output
   * gradient per token (select/kronecker.ts). A module applied twice keeps its last application.
   */
  readonly loraValues = new Map<string, { x: Value; u: Value; v: Value }>();

  constructor(
    readonly g: Graph,
    readonly cfg: ModelConfig,
    readonly weights: WeightStore,
    readonly adapters: WeightStore | null,
    readonly peft: PeftSpec | null,
    readonly inputs: ForwardInputs,
  ) {}

  get batch(): number {
    return this.inputs.ids.shape[0]!;
  }
  get seq(): number {
    return this.inputs.ids.shape[1]!;
  }

  /** the graph parameter for a weight (created on first use, fed from the store by name) */
  w(name: string): Value {
    let v = this.params.get(name);
    if (!v) {
      const t = this.adapters?.has(name) ? this.adapters.get(name) : this.weights.has(name) ? this.weights.get(name) : null;
      if (!t) throw new LmtuneError('CHECKPOINT', `the ${this.cfg.family} forward needs weight '${name}', which is not loaded`);
      v = this.g.param(name, t.shape);
      this.params.set(name, v);
    }
    return v;
  }

  has(name: string): boolean {
    return this.weights.has(name) || (this.adapters?.has(name) ?? false);
  }

  /** the optional bias of a module */
  maybe(name: string): Value | null {
    return this.has(name) ? this.w(name) : null;
  }

  /** parameters created so far, by name */
  paramValues(): Map<string, Value> {
    return this.params;
  }

  /**
   * y = x Wᵀ + b for module `module` (HF weight `${module}.weight`), plus the LoRA update
   * (x Aᵀ Bᵀ)·α/r when the module is a LoRA target.
   */
  linear(x: Value, module: string, layout: 'out_in' | 'in_out' = 'out_in'): Value {
    let y = nn.linear(x, this.w(`${module}.weight`), this.maybe(`${module}.bias`), layout);
    const lora = this.peft?.kind === 'lora' ? this.peft : null;
    if (lora && this.adapters?.has(`${module}.lora_A.weight`)) {
      const a = this.w(`${module}.lora_A.weight`);
      const b = this.w(`${module}.lora_B.weight`);
      const parts = loraParts(x, a, b, lora);
      this.loraValues.set(module, { x, u: parts.u, v: parts.v });
      y = y.add(parts.delta);
    }
    return y;
  }

  /**
   * Attention of q [B, H, T, D] over k, v [B, Hkv, T, D] with the batch's bias. Prefix-tuning slots for
   * `module` (HF attention module name) are prepended to k and v; grouped-query heads are repeated.
   */
  attend(q: Value, k: Value, v: Value, module: string, scale: number): Value {
    if (this.captureKv) this.capturedKv.push({ k, v });
    const layer = this.layer++;
    if (this.past) {
      k = this.g.concat([this.past[layer]!.k, k], 2);
      v = this.g.concat([this.past[layer]!.v, v], 2);
    }
    const Hkv = k.shape[1]!;
    const pre = this.peft?.kind === 'prefix' && this.adapters?.has(`${module}.prefix_keys`);
    if (pre) {
      const m = this.peft!.kind === 'prefix' ? this.peft!.slots : 0;
      k = prependPrefix(this.g, this.w(`${module}.prefix_keys`), k, m);
      v = prependPrefix(this.g, this.w(`${module}.prefix_values`), v, m);
    }
    const H = q.shape[1]!;
    const groups = H / Hkv;
    return nn.attention(q, nn.repeatKv(k, groups), nn.repeatKv(v, groups), this.inputs.bias, scale);
  }
}

/** the activation functions HF configs name */
export function activation(x: Value, act: string): Value {
  switch (act) {
    case 'gelu':
    case 'gelu_python':
      return x.gelu('none');
    case 'gelu_new':
    case 'gelu_fast':
    case 'gelu_pytorch_tanh':
      return x.gelu('tanh');
    case 'quick_gelu':
      return x.mul(x.mul(1.702).sigmoid());
    case 'relu':
      return x.relu();
    case 'silu':
    case 'swish':
      return x.silu();
    default:
      throw new LmtuneError('UNSUPPORTED', `activation '${act}' is not supported`);
  }
}
