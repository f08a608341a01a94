// The one way a page drops late answers: each route gets its own AbortController. Starting the next route (or
// leaving, as a sign-out does) aborts the previous one, so its calls in flight are cancelled and their answers
// are dropped (see http.js); its timers listen to the same signal. Messages follow pages the same way.
import { $, toastForPage } from "/web/widgets.js";

export function createRouter() {
  let controller = null;
  let shownPage = null;
  return {
    begin(page) {
      // A new route for ``page`` (a name that says which page it draws): returns its AbortSignal.
      if (controller) controller.abort();
      controller = new AbortController();
      toastForPage(page !== shownPage);
      shownPage = page;
      return controller.signal;
    },
    leave() {
      // The current route ends with nothing after it yet (the next one begins on the hashchange).
      if (controller) controller.abort();
    },
    get page() {
      return controller && !controller.signal.aborted ? shownPage : null;
    },
  };
}

export function pageScope(router, client, page, host = $("page")) {
  // A route's calls and drawing: ``call``/``write`` carry its signal; ``show`` draws only while it is current.
  const signal = router.begin(page);
  return {
    signal,
    page,
    ...client.bound(signal),
    show(...nodes) {
      if (!signal.aborted) host.replaceChildren(...nodes);
      return !signal.aborted;
    },
    later(fn, ms) {
      // A timer of this route: it does not fire once the route has ended.
      const timer = setTimeout(() => { if (!signal.aborted) fn(); }, ms);
      signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
      return timer;
    },
  };
}
