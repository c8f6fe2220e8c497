/** Which parameter-efficient method a run uses, and its settings. */
export interface LoraSpec {
  kind: 'lora';
  rank: number;
  alpha: number;
  dropout: number;
  /** module-name patterns (regular expressions, matched against HF module names) */
  targets: string[];
}

export interface PrefixSpec {
  kind: 'prefix';
  /** m: key/value slots per attention layer */
  slots: number;
  /** initialize from the frozen model's keys/values on random tokens (MeZO: crucial for stability) */
  initByRealActivations: boolean;
}

export interface FullSpec {
  kind: 'full';
  /** train only base weights whose names match this regular expression (e.g. layer norms: BitFit-style) */
  only?: string;
}

export type PeftSpec = LoraSpec | PrefixSpec | FullSpec;
