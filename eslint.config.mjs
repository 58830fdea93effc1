// typescript-eslint's recommended rules, configured once for lib/, scripts/ and test/.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'runs/', 'data/', 'notebooks/', 'benchmarks/', '.cache/', 'web-dist/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      // CommonJS output: lazy require() is how optional backends are loaded only when installed.
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
