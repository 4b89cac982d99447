export * from './api';
export * from './body';
export * from './config';
export * from './errors';
export * from './http';
export * from './log';
export * from './upstream';
export * from './cluster';
