/** Types of login.js for the tests that import it (the browser loads the .js as is). */
export declare function safeNext(raw: unknown, origin: string): string;
