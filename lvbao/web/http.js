// The one HTTP client of every page: calls to the API on this origin with a bearer token, a timeout, one token
// refresh at a time, writes retried with the same Idempotency-Key after a network error, and errors in the
// contract's shape (ApiError). A call made for a route carries that route's AbortSignal: when the user moves
// on, the call is aborted and its answer is dropped (Dropped), never drawn.

const NETWORK = "网络不稳定，请稍后重试";

export class ApiError extends Error {
  // An answer in the contract's error shape: its Chinese message is what people are shown.
  constructor(status, body) {
    super((body && body.message) || "服务暂不可用，请稍后再试");
    this.status = status;
    this.code = body && body.code;
    this.errors = body && body.errors;
  }
}

export class Dropped extends Error {
  // The answer of a call whose route (or session) has ended: nobody is waiting for it any more.
  constructor() {
    super("dropped");
    this.name = "Dropped";
  }
}

const networkError = () => new ApiError(0, { code: "network", message: NETWORK });
const wait = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); reject(new Dropped()); }, { once: true });
});

export const newIdempotencyKey = () =>
  (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[-.]/g, "");

async function fetchWithin(path, init, signal, timeoutMs) {
  // fetch() aborted by ``signal`` (Dropped) or after ``timeoutMs`` (a network error, like a dropped line).
  if (signal && signal.aborted) throw new Dropped();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const follow = () => controller.abort();
  if (signal) signal.addEventListener("abort", follow, { once: true });
  try {
    const response = await fetch(path, { ...init, cache: "no-store", signal: controller.signal });
    return { response, done: () => { clearTimeout(timer); if (signal) signal.removeEventListener("abort", follow); } };
  } catch (error) {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", follow);
    throw signal && signal.aborted ? new Dropped() : networkError();
  }
}

export function tokenRefresher(readRefresh, keepPair, timeoutMs = 10000) {
  // A refresh of a signed-in person's token pair that runs one at a time: refresh tokens rotate, and a spent
  // one presented again revokes the whole family. Resolves true when ``keepPair`` got a new pair, false when
  // there is none to refresh or the server refused (the session has ended).
  let refreshing = null;
  return () => {
    if (!refreshing) {
      refreshing = (async () => {
        const token = readRefresh();
        if (!token) return false;
        const { response, done } = await fetchWithin("/api/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh_token: token }),
        }, null, timeoutMs);
        try {
          if (!response.ok) return false;
          keepPair(await response.json());
          return true;
        } finally {
          done();
        }
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  };
}

export function createClient({ token = () => null, refresh = null, onSessionEnded = null, timeoutMs = 10000 } = {}) {
  // ``token()``: the bearer token to send now (or null); ``refresh()``: renews it, resolving true when it did;
  // ``onSessionEnded()``: called once when a refused token cannot be renewed.
  async function request(method, path, body, options = {}) {
    // options: signal (the route's); as ("json" | "blob", else by the answer's type); raw body and its
    // contentType; idempotencyKey; signedOut (no token sent: a sign-in); noRefresh (a sign-out renews nothing).
    const { signal = null, as = null, raw = false, contentType = "application/json", idempotencyKey = null,
            signedOut = false, noRefresh = false, retried = false } = options;
    const headers = { Accept: as === "blob" ? "*/*" : "application/json" };
    const sent = signedOut ? null : token();
    if (sent) headers.Authorization = "Bearer " + sent;
    if (body !== undefined) headers["Content-Type"] = contentType;
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    const { response, done } = await fetchWithin(path, {
      method, headers, body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
    }, signal, timeoutMs);
    try {
      if (response.status === 401 && sent && !retried && !noRefresh && refresh) {
        const again = { ...options, retried: true };
        if (token() && token() !== sent) return await request(method, path, body, again);  // renewed meanwhile
        if (await refresh()) return await request(method, path, body, again);
        if (token() && onSessionEnded) onSessionEnded();  // once, however many calls were waiting
        if (signal && signal.aborted) throw new Dropped();
        throw new ApiError(401, { code: "unauthorized", message: "登录已失效，请重新登录" });
      }
      if (!response.ok) {
        let problem = null;
        try { problem = await response.json(); } catch (e) { /* not the error shape */ }
        throw new ApiError(response.status, problem);
      }
      const type = response.headers.get("Content-Type") || "";
      const answer = response.status === 204 ? null
        : as === "blob" || (as !== "json" && !type.includes("json")) ? await response.blob() : await response.json();
      if (signal && signal.aborted) throw new Dropped();
      return answer;
    } catch (error) {
      if (signal && signal.aborted) throw new Dropped();  // a late answer, whatever it was
      if (error instanceof ApiError || error instanceof Dropped) throw error;
      throw networkError();  // the body broke off
    } finally {
      done();
    }
  }

  async function write(method, path, body, options = {}) {
    // A write that may be retried (network blip): the same Idempotency-Key every time, so it counts once.
    const idempotencyKey = options.idempotencyKey || newIdempotencyKey();
    const { retries = 2, retryDelayMs = 800 } = options;
    for (let attempt = 0; ; attempt++) {
      try {
        return await request(method, path, body, { ...options, idempotencyKey });
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 0 || attempt >= retries) throw error;
        await wait(retryDelayMs * (attempt + 1), options.signal);
      }
    }
  }

  return {
    request,
    write,
    get: (path, options = {}) => request("GET", path, undefined, options),
    bound(signal) {
      // The same calls, made for one route: aborted and dropped when ``signal`` aborts.
      return {
        call: (method, path, body, options = {}) => request(method, path, body, { signal, ...options }),
        write: (method, path, body, options = {}) => write(method, path, body, { signal, ...options }),
      };
    },
  };
}
