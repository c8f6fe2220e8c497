/** Registers every primitive (side-effect imports). */
import './elementwise.ts';
import './reduce.ts';
import './shape.ts';
import './matmul.ts';
import './fused.ts';
