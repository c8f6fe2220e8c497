/**
 * The reference's per-task prompts and word lists (`test_downstream.py`, see
 * ../shared/specs/kernel-and-features.md B5). The prompt is appended to the text, trailing space
 * included; tasks the reference does not cover have no default prompt or words.
 */
export interface TaskFeatureDefaults {
  prompt: string;
  /** the "subset p_f" words */
  subset: readonly string[];
  /** the "class p_f" words */
  classWords: readonly string[];
}

const SENTIMENT_SUBSET = [':)', ':(', 'great', 'charming', 'flawed', 'classic', 'interesting', 'boring', 'sad', 'happy', 'terrible', 'fantastic', 'exciting', 'strong'];
const AG_SUBSET = ['world', 'politics', 'sports', 'business', 'science', 'financial', 'market', 'foreign', 'technology', 'international', 'stock', 'company', 'tech', 'technologies'];

const MOVIE: TaskFeatureDefaults = { prompt: ' This movie is ', subset: SENTIMENT_SUBSET, classWords: [':)', ':('] };
const SENTIMENT: TaskFeatureDefaults = { prompt: ' The sentiment is ', subset: SENTIMENT_SUBSET, classWords: [':)', ':('] };

const BY_TASK: Readonly<Record<string, TaskFeatureDefaults>> = {
  sst2: MOVIE,
  sst5: MOVIE,
  mr: MOVIE,
  imdb: MOVIE,
  cr: SENTIMENT,
  mpqa: SENTIMENT,
  agnews: { prompt: ' This article is about ', subset: AG_SUBSET, classWords: ['foreign', 'sports', 'financial', 'scientific'] },
};

/** the defaults for a task name (as `Task.name` spells it), or null */
export function featureDefaults(taskName: string): TaskFeatureDefaults | null {
  return BY_TASK[taskName] ?? null;
}

/** tasks whose reference protocol is repeated random 90/10 splits (no test split) */
export const SPLIT_TASKS: ReadonlySet<string> = new Set(['cr', 'mpqa']);
