/**
 * Three projects: unit specs beside the code, integration specs (services on a real PostgreSQL)
 * and end-to-end specs (HTTP against the in-process app). Type checking is `npm run typecheck`;
 * jest only transpiles.
 */
const tsJest = ['ts-jest', { tsconfig: '<rootDir>/tsconfig.jest.json' }];
// content-disposition (under @fastify/static) ships ES modules only; Node 20 requires them natively,
// jest's sandbox does not, so jest transpiles that one package.
const transform = { '^.+\\.ts$': tsJest, '/node_modules/content-disposition/.+\\.js$': tsJest };
const common = {
  transform,
  transformIgnorePatterns: ['/node_modules/(?!content-disposition/)'],
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
};

module.exports = {
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 60000,
  // A worker runs suite after suite, each starting apps of its own: what they left in the heap added
  // up (a CI run's worker died at its 4 GB limit 17 minutes in, near the end). Closed apps are no
  // longer kept (95e36b5: 16 e2e files in one worker ended at 672 MB of live heap, against 1,496 MB
  // before: BENCHMARKS.md, "The test run's heap"); a worker past this after a suite is still replaced by a new one.
  workerIdleMemoryLimit: '1536MB',
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts', '<rootDir>/console/src/**/*.spec.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/**/*.int-spec.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
  ],
};
