// <paywindow-checkout>: Paywindow's payment window for one order, dropped into any page.
//
//   <script type="module" src="https://pay.example.vn/sdk/paywindow-checkout.js"></script>
//   <paywindow-checkout order="<order id or code>" client-secret="<from your backend>" lang="vi"></paywindow-checkout>
//
// Attributes: api (the API's origin; default: where this script came from), order, client-secret
// (minted by your backend: POST /api/v1/orders/{ref}/client-secret), lang (vi | en), gateways
// (offered for a retry, comma-separated; default momo,vnpay,payos).
// It shows the server-synced countdown, the pay button for the current attempt, retry with another
// gateway while attempts remain, cancel, live status over the order's event stream (reconnecting,
// and fetching the order again after a gap), and the final state. It dispatches bubbling, composed
// `paywindow:paid | expired | cancelled | failed` events with the order in `detail`, and
// `paywindow:error` ({code, message}) when the API refuses (e.g. CLIENT_SECRET_EXPIRED: mint another).
// The host attribute `status` mirrors the order's status. Style it with the --paywindow-* custom
// properties and ::part(root | header | heading | status | countdown | timer | message | error |
// pay-button | retry | retry-select | retry-button | cancel-button | confirm | items | total |
// attempts | live). No dependencies, no build step.

export const VERSION = "1.0.0";

const TEXTS = {
  vi: {
    order: "Đơn hàng #{code}",
    loading: "Đang tải đơn hàng…",
    timeLeft: "Thời gian còn lại",
    timerLabel: "Thời gian còn lại để thanh toán",
    payBefore: "Vui lòng thanh toán trước {time}.",
    closing: "Hết giờ — đang xác nhận với cổng thanh toán…",
    lastFailed: "Lần thanh toán vừa rồi không thành công. Hãy thử lại, có thể với cổng khác.",
    payWith: "Thanh toán với {gateway}",
    payWithLabel: "Thanh toán với {gateway} — mở trang thanh toán {gateway} trong thẻ mới",
    retryWith: "Thử lại với",
    retryButton: "Tạo liên kết mới",
    remainingAttempts: "Còn {n}/{max} lần thử lại",
    noAttemptsLeft: "Đã hết lượt thử lại",
    cancel: "Hủy đơn",
    cancelConfirm: "Hủy đơn hàng này?",
    cancelYes: "Có, hủy đơn",
    cancelNo: "Không",
    items: "Sản phẩm",
    total: "Tổng cộng",
    attempts: "Các lần thanh toán",
    attemptRow: "Lần {n} · {gateway} · {status}",
    live: "Cập nhật trực tiếp",
    offline: "Mất kết nối cập nhật trực tiếp — đang thử lại…",
    "status.pending_payment": "Chờ thanh toán",
    "status.paid": "Đã thanh toán",
    "status.cancelled": "Đã hủy",
    "status.expired": "Đã hết hạn",
    "status.failed": "Thanh toán thất bại",
    "final.paid": "Cảm ơn bạn! Đơn hàng đã được thanh toán.",
    "final.cancelled": "Đơn hàng đã bị hủy, hàng đã được hoàn về kho.",
    "final.expired": "Phiên thanh toán đã hết hạn. Vui lòng tạo đơn hàng mới.",
    "final.failed": "Không thể thanh toán đơn hàng này.",
    "attempt.pending": "đang chờ",
    "attempt.success": "thành công",
    "attempt.failed": "thất bại",
    "attempt.cancelled": "đã hủy",
    "attempt.expired": "hết hạn",
    "attempt.system_error": "lỗi hệ thống",
    "attempt.refund_required": "cần hoàn tiền",
    "attempt.refunded": "đã hoàn tiền",
    "attempt.needs_review": "đang kiểm tra",
    "error.SESSION_EXPIRED": "Phiên thanh toán đã hết hạn. Vui lòng tạo đơn hàng mới.",
    "error.MAX_ATTEMPTS_REACHED": "Đã vượt quá số lần thanh toán cho phép ({max} lần).",
    "error.SESSION_NOT_ACTIVE": "Phiên thanh toán không còn hoạt động.",
    "error.PAYMENT_GATEWAY_ERROR": "Cổng thanh toán không tạo được liên kết. Vui lòng thử cổng khác.",
    "error.ORDER_NOT_FOUND": "Không tìm thấy đơn hàng.",
    "error.PAYMENT_ALREADY_PROCESSED": "Đơn hàng đã được thanh toán, không thể hủy.",
    "error.ORDER_NOT_PENDING": "Đơn hàng không còn chờ thanh toán.",
    "error.CLIENT_SECRET_EXPIRED": "Phiên làm việc đã hết hạn. Vui lòng tải lại trang.",
    "error.CLIENT_SECRET_REVOKED": "Phiên làm việc đã bị thu hồi. Vui lòng tải lại trang.",
    "error.INVALID_CLIENT_SECRET": "Mã truy cập đơn hàng không hợp lệ.",
    "error.CLIENT_SECRET_WRONG_ORDER": "Mã truy cập này dành cho đơn hàng khác.",
    "error.MISSING_ATTRIBUTES": "Thiếu thuộc tính order hoặc client-secret.",
    "error.RATE_LIMITED": "Quá nhiều yêu cầu. Vui lòng thử lại sau giây lát.",
    "error.NETWORK": "Không kết nối được máy chủ.",
    "error.default": "Có lỗi xảy ra: {message}",
  },
  en: {
    order: "Order #{code}",
    loading: "Loading the order…",
    timeLeft: "Time left",
    timerLabel: "Time left to pay",
    payBefore: "Please pay before {time}.",
    closing: "Time is up — confirming with the gateway…",
    lastFailed: "The last payment did not go through. Try again, with another gateway if you like.",
    payWith: "Pay with {gateway}",
    payWithLabel: "Pay with {gateway} — open the {gateway} payment page in a new tab",
    retryWith: "Retry with",
    retryButton: "Get a new link",
    remainingAttempts: "{n}/{max} retries left",
    noAttemptsLeft: "No retries left",
    cancel: "Cancel order",
    cancelConfirm: "Cancel this order?",
    cancelYes: "Yes, cancel it",
    cancelNo: "No",
    items: "Items",
    total: "Total",
    attempts: "Payment attempts",
    attemptRow: "Attempt {n} · {gateway} · {status}",
    live: "Live updates",
    offline: "Live updates lost — reconnecting…",
    "status.pending_payment": "Awaiting payment",
    "status.paid": "Paid",
    "status.cancelled": "Cancelled",
    "status.expired": "Expired",
    "status.failed": "Payment failed",
    "final.paid": "Thank you! The order is paid.",
    "final.cancelled": "The order was cancelled and its items are back in stock.",
    "final.expired": "The payment window has closed. Please place a new order.",
    "final.failed": "This order could not be paid.",
    "attempt.pending": "pending",
    "attempt.success": "success",
    "attempt.failed": "failed",
    "attempt.cancelled": "cancelled",
    "attempt.expired": "expired",
    "attempt.system_error": "system error",
    "attempt.refund_required": "refund required",
    "attempt.refunded": "refunded",
    "attempt.needs_review": "under review",
    "error.SESSION_EXPIRED": "The payment session has expired. Please place a new order.",
    "error.MAX_ATTEMPTS_REACHED": "Maximum payment attempts ({max}) reached.",
    "error.SESSION_NOT_ACTIVE": "The payment session is no longer active.",
    "error.PAYMENT_GATEWAY_ERROR": "The gateway could not make a payment link. Try another gateway.",
    "error.ORDER_NOT_FOUND": "Order not found.",
    "error.PAYMENT_ALREADY_PROCESSED": "The order is already paid and cannot be cancelled.",
    "error.ORDER_NOT_PENDING": "The order is no longer awaiting payment.",
    "error.CLIENT_SECRET_EXPIRED": "This checkout has expired. Please reload the page.",
    "error.CLIENT_SECRET_REVOKED": "This checkout was revoked. Please reload the page.",
    "error.INVALID_CLIENT_SECRET": "This checkout's access key is not valid.",
    "error.CLIENT_SECRET_WRONG_ORDER": "This access key is for another order.",
    "error.MISSING_ATTRIBUTES": "The order or client-secret attribute is missing.",
    "error.RATE_LIMITED": "Too many requests. Please try again in a moment.",
    "error.NETWORK": "Cannot reach the server.",
    "error.default": "Something went wrong: {message}",
  },
};

const GATEWAY_NAMES = { momo: "MoMo", vnpay: "VNPay", payos: "PayOS" };
const TERMINAL = new Set(["paid", "expired", "cancelled", "failed"]);
// The API refused this checkout itself: retrying the same request cannot help.
const FATAL = new Set([
  "CLIENT_SECRET_EXPIRED", "CLIENT_SECRET_REVOKED", "INVALID_CLIENT_SECRET", "CLIENT_SECRET_WRONG_ORDER",
  "ORDER_NOT_FOUND", "MISSING_ATTRIBUTES",
]);
const SKEW_TOLERANCE_MS = 1500; // remainingSeconds is floored: less than this is not clock skew
const RECONNECT_MS = [500, 1000, 2000, 5000, 10000, 15000];
const SCRIPT_ORIGIN = new URL(import.meta.url).origin;

const STYLE = `
:host {
  --_accent: var(--paywindow-accent, #a50064); --_fg: var(--paywindow-fg, #1f2328);
  --_bg: var(--paywindow-bg, #fff); --_muted: var(--paywindow-muted, #59636e);
  --_line: var(--paywindow-border, #d1d9e0); --_ok: var(--paywindow-ok, #1a7f37);
  --_bad: var(--paywindow-danger, #cf222e); --_warn: var(--paywindow-warn, #9a6700);
  --_radius: var(--paywindow-radius, 8px); --_focus: var(--paywindow-focus, #0969da);
  display: block; color: var(--_fg); background: var(--_bg);
  font-family: var(--paywindow-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif); line-height: 1.45;
}
[hidden] { display: none !important; }
.root { border: 1px solid var(--_line); border-radius: var(--_radius); padding: 1rem 1.25rem; }
header { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; }
h2 { font-size: 1.15rem; margin: 0; }
h3 { font-size: 1rem; margin: 1rem 0 .25rem; }
.badge { display: inline-block; padding: .15rem .6rem; border-radius: 999px; font-weight: 600; background: #ddf4ff; color: #0550ae; }
.badge[data-status=paid] { background: #dafbe1; color: #116329; }
.badge[data-status=expired], .badge[data-status=cancelled] { background: #eaeef2; color: #424a53; }
.badge[data-status=failed] { background: #ffebe9; color: #a40e26; }
.countdown { font-size: 1.05rem; margin: .75rem 0 .25rem; }
#timer { font-size: 2.25rem; font-weight: 700; font-variant-numeric: tabular-nums; margin-left: .5rem; }
.state { font-size: 1.05rem; font-weight: 600; }
.state[data-status=paid] { color: var(--_ok); }
.state[data-status=closing] { color: var(--_warn); }
.state[data-status=expired], .state[data-status=failed], .state[data-status=cancelled] { color: var(--_bad); }
.error { background: #ffebe9; border: 1px solid var(--_bad); color: #a40e26; padding: .5rem .75rem; border-radius: 6px; }
.row { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: .5rem 0; }
button, .button, select {
  font: inherit; border-radius: 6px; border: 1px solid var(--_line); padding: .45rem .8rem;
  background: #f6f8fa; color: var(--_fg); cursor: pointer; display: inline-block; text-decoration: none;
}
button:disabled { opacity: .55; cursor: not-allowed; }
.primary { background: var(--_accent); border-color: var(--_accent); color: #fff; font-weight: 600; }
.danger { color: var(--_bad); border-color: var(--_bad); background: var(--_bg); }
:focus-visible { outline: 3px solid var(--_focus); outline-offset: 2px; }
.muted { color: var(--_muted); }
.plain { list-style: none; padding-left: 0; margin: 0; }
.total { font-size: 1.05rem; }
`;

const TEMPLATE = `
<section id="box" part="root" class="root" aria-labelledby="heading" aria-busy="true">
  <header part="header"><h2 id="heading" part="heading"></h2><span id="status-badge" part="status" class="badge"></span></header>
  <p id="countdown" part="countdown" class="countdown" hidden>
    <span id="time-left"></span><span id="timer" part="timer" role="timer">--:--</span>
  </p>
  <p id="state-msg" part="message" class="state" aria-live="polite" aria-atomic="true"></p>
  <p id="error" part="error" class="error" role="alert" hidden></p>
  <p><a id="pay-link" part="pay-button" class="button primary" target="_blank" rel="noopener" hidden></a></p>
  <form id="retry" part="retry" class="row" hidden>
    <label><span id="retry-with"></span> <select id="retry-gateway" name="gateway" part="retry-select"></select></label>
    <button type="submit" id="retry-button" part="retry-button"></button>
    <span id="retry-left" class="muted"></span>
  </form>
  <div class="row" id="cancel-row" hidden>
    <button type="button" id="cancel" part="cancel-button" class="danger"></button>
    <span id="confirm" part="confirm" role="group" aria-labelledby="confirm-q" hidden>
      <span id="confirm-q"></span>
      <button type="button" id="cancel-yes" class="danger"></button>
      <button type="button" id="cancel-no"></button>
    </span>
  </div>
  <h3 id="items-h"></h3>
  <ul id="order-items" part="items" class="plain"></ul>
  <p class="total"><span id="total-label"></span>: <strong id="order-total" part="total"></strong></p>
  <h3 id="attempts-h"></h3>
  <ul id="attempts" part="attempts" class="plain"></ul>
  <p id="live" part="live" class="muted"></p>
</section>`;

let shared = null;
function sheet() {
  if (shared === null) {
    shared = new CSSStyleSheet();
    shared.replaceSync(STYLE);
  }
  return shared;
}

class PaywindowError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function formatRemaining(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  return `${String(Math.floor(total / 60)).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}

export class PaywindowCheckout extends HTMLElement {
  static observedAttributes = ["api", "order", "client-secret", "lang", "gateways"];

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    // A constructed stylesheet, not a <style>: pages with a strict CSP (style-src 'self') allow it.
    this.root.adoptedStyleSheets = [sheet()];
    this.root.innerHTML = TEMPLATE;
    this.$ = (id) => this.root.getElementById(id);
    this.order = null;
    this.error = null;
    this.source = null;
    this.deadline = null;
    this.ticker = null;
    this.retryTimer = null;
    this.failures = 0; // stream failures in a row (the reconnect backoff)
    this.announced = null; // the terminal status already dispatched
    this.generation = 0; // bumped on every (re)start: late answers for an old order are dropped
    this.restarting = false;
    this.onOnline = () => this.reconnect();
    this.onOffline = () => this.dropStream();
    this.onVisible = () => document.visibilityState === "visible" && this.order && !this.final && this.reconnect();
    this.$("retry").addEventListener("submit", (event) => {
      event.preventDefault();
      this.retry();
    });
    this.$("cancel").addEventListener("click", () => this.askCancel(true));
    this.$("cancel-no").addEventListener("click", () => this.askCancel(false));
    this.$("cancel-yes").addEventListener("click", () => this.cancel());
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  connectedCallback() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.restart();
  }

  disconnectedCallback() {
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    document.removeEventListener("visibilitychange", this.onVisible);
    this.stop();
  }

  attributeChangedCallback(name, before, after) {
    if (before === after || !this.isConnected) return;
    if (name === "lang" || name === "gateways") this.render();
    else this.restart();
  }

  /** Start over once for a burst of attribute changes (a page sets order and client-secret in turn). */
  restart() {
    if (this.restarting) return;
    this.restarting = true;
    queueMicrotask(() => {
      this.restarting = false;
      if (this.isConnected) this.start();
    });
  }

  get api() {
    return (this.getAttribute("api") || SCRIPT_ORIGIN).replace(/\/+$/, "");
  }

  get lang() {
    const asked = (this.getAttribute("lang") || this.closest("[lang]")?.getAttribute("lang") || "vi").toLowerCase();
    return asked.startsWith("en") ? "en" : "vi";
  }

  get gateways() {
    const asked = (this.getAttribute("gateways") || "momo,vnpay,payos").split(",").map((g) => g.trim().toLowerCase());
    const known = asked.filter((g) => g in GATEWAY_NAMES);
    return known.length ? known : Object.keys(GATEWAY_NAMES);
  }

  get final() {
    return this.order !== null && TERMINAL.has(this.order.status);
  }

  t(key, vars = {}) {
    const text = TEXTS[this.lang][key] ?? TEXTS.vi[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  }

  stop() {
    this.generation += 1;
    this.dropStream();
    clearInterval(this.ticker);
    this.ticker = null;
  }

  async start() {
    this.stop();
    this.order = null;
    this.announced = null;
    this.failures = 0;
    this.showError(null);
    this.setLive("");
    this.removeAttribute("status");
    this.$("box").setAttribute("aria-busy", "true");
    this.render();
    const [order, secret] = [this.getAttribute("order"), this.getAttribute("client-secret")];
    this.$("box").hidden = !order && !secret; // not given an order yet: nothing to show
    if (!order && !secret) return;
    if (!order || !secret) {
      return this.fail(new PaywindowError("MISSING_ATTRIBUTES", "order and client-secret are required"));
    }
    await this.reconnect();
  }

  // ---- the API --------------------------------------------------------------------------------

  async request(method, path = "", body) {
    const ref = encodeURIComponent(this.getAttribute("order"));
    const init = {
      method,
      headers: { Accept: "application/json", Authorization: `Bearer ${this.getAttribute("client-secret")}` },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(`${this.api}/api/v1/orders/${ref}${path}`, init);
    } catch {
      throw new PaywindowError("NETWORK", "network error");
    }
    const envelope = await response.json().catch(() => null);
    if (!response.ok || !envelope?.success) {
      throw new PaywindowError(envelope?.error || `HTTP_${response.status}`, envelope?.message || response.statusText, response.status);
    }
    return envelope.data;
  }

  /** The order as the API holds it now, then its live stream (unless it has ended). */
  async reconnect() {
    clearTimeout(this.retryTimer);
    if (!this.getAttribute("order") || !this.getAttribute("client-secret")) return;
    const generation = this.generation;
    try {
      const order = await this.request("GET");
      if (generation !== this.generation) return;
      this.update(order);
      if (this.error?.code === "NETWORK") this.showError(null);
    } catch (err) {
      if (generation !== this.generation) return;
      if (FATAL.has(err.code)) return this.fail(err);
      this.showError(err);
      return this.scheduleReconnect();
    }
    if (!this.final) this.listen();
  }

  listen() {
    this.dropStream();
    if (navigator.onLine === false) return this.setLive(this.t("offline"));
    const ref = encodeURIComponent(this.getAttribute("order"));
    const secret = encodeURIComponent(this.getAttribute("client-secret"));
    const source = new EventSource(`${this.api}/api/v1/orders/${ref}/events?clientSecret=${secret}`);
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
      this.setLive(this.t("live"));
    });
    source.addEventListener("session", (event) => {
      if (this.source !== source) return;
      this.update(JSON.parse(event.data));
      if (this.final) this.dropStream(); // or EventSource would reconnect to a finished stream
    });
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      // Whatever broke (the network, the API restarting, a proxy's timeout), we reconnect ourselves
      // and read the order first: anything pushed while we were away is in that read.
      this.dropStream();
      this.setLive(this.t("offline"));
      this.scheduleReconnect();
    });
  }

  dropStream() {
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
    if (!this.final && this.order) this.setLive(this.t("offline"));
  }

  scheduleReconnect() {
    clearTimeout(this.retryTimer);
    if (navigator.onLine === false) return; // the `online` event brings us back
    const delay = RECONNECT_MS[Math.min(this.failures, RECONNECT_MS.length - 1)];
    this.failures += 1;
    this.retryTimer = setTimeout(() => this.reconnect(), delay);
  }

  async retry() {
    const button = this.$("retry-button");
    button.disabled = true;
    const generation = this.generation;
    try {
      await this.request("POST", "/retry-payment", { gateway: this.$("retry-gateway").value });
      this.showError(null);
      const order = await this.request("GET"); // the stream pushes it too; this is sooner
      if (generation === this.generation) this.update(order);
    } catch (err) {
      this.showError(err);
      this.render();
    }
  }

  askCancel(asking) {
    this.$("confirm").hidden = !asking;
    this.$("cancel").hidden = asking;
    this.$(asking ? "cancel-no" : "cancel").focus();
  }

  async cancel() {
    const generation = this.generation;
    try {
      const order = await this.request("POST", "/cancel", {});
      this.showError(null);
      if (generation === this.generation) this.update(order);
    } catch (err) {
      this.showError(err);
      this.askCancel(false);
    }
  }

  // ---- rendering ------------------------------------------------------------------------------

  fail(err) {
    this.stop();
    this.showError(err);
    this.emit("error", { code: err.code, message: err.message, status: err.status });
  }

  showError(err) {
    this.error = err;
    const box = this.$("error");
    if (!err) return void (box.hidden = true);
    const vars = { message: err.message, max: this.order?.session.maxPaymentAttempts ?? 3 };
    const key = `error.${err.code}`;
    this.setText(box, key in TEXTS[this.lang] ? this.t(key, vars) : this.t("error.default", vars));
    box.hidden = false;
  }

  setText(node, text) {
    if (node.textContent !== text) node.textContent = text; // live regions announce only real changes
  }

  setLive(text) {
    this.setText(this.$("live"), text);
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(`paywindow:${name}`, { bubbles: true, composed: true, detail }));
  }

  update(order) {
    if (this.order && order.orderId !== this.order.orderId) return;
    if (this.order && Date.parse(order.updatedAt) < Date.parse(this.order.updatedAt)) return; // a stale read
    this.order = order;
    const session = order.session;
    if (order.status === "pending_payment" && session.status === "active") {
      const expiresAt = Date.parse(session.expiresAt);
      const skew = expiresAt - Date.now() - session.remainingSeconds * 1000;
      this.deadline = Math.abs(skew) < SKEW_TOLERANCE_MS ? expiresAt : expiresAt - skew;
      if (this.ticker === null) this.ticker = setInterval(() => this.tick(), 250);
    } else {
      clearInterval(this.ticker);
      this.ticker = null;
      this.deadline = null;
    }
    this.render();
    if (this.final && this.announced !== order.status) {
      this.announced = order.status;
      this.setLive("");
      this.emit(order.status, order);
    }
  }

  remaining() {
    return this.deadline === null ? 0 : Math.max(0, this.deadline - Date.now());
  }

  tick() {
    this.setText(this.$("timer"), formatRemaining(this.remaining()));
    this.renderWindow();
  }

  render() {
    const $ = this.$;
    const order = this.order;
    this.setText($("time-left"), this.t("timeLeft"));
    $("timer").setAttribute("aria-label", this.t("timerLabel"));
    this.setText($("retry-with"), this.t("retryWith"));
    this.setText($("retry-button"), this.t("retryButton"));
    this.setText($("cancel"), this.t("cancel"));
    this.setText($("confirm-q"), this.t("cancelConfirm"));
    this.setText($("cancel-yes"), this.t("cancelYes"));
    this.setText($("cancel-no"), this.t("cancelNo"));
    this.setText($("items-h"), this.t("items"));
    this.setText($("total-label"), this.t("total"));
    this.setText($("attempts-h"), this.t("attempts"));
    if (this.error) this.showError(this.error);
    if (!order) {
      this.setText($("heading"), this.t("loading"));
      for (const id of ["countdown", "retry", "cancel-row", "pay-link"]) $(id).hidden = true;
      return;
    }
    $("box").setAttribute("aria-busy", "false");
    this.setAttribute("status", order.status);
    const pending = order.status === "pending_payment";
    const session = order.session;
    this.setText($("heading"), this.t("order", { code: order.orderCode }));
    const badge = $("status-badge");
    this.setText(badge, this.t(`status.${order.status}`));
    badge.dataset.status = order.status;
    $("countdown").hidden = !pending;
    $("retry").hidden = !pending;
    $("cancel-row").hidden = !pending;
    if (!pending) $("confirm").hidden = true;
    if (pending && $("confirm").hidden) $("cancel").hidden = false;
    const money = new Intl.NumberFormat(this.lang === "vi" ? "vi-VN" : "en-US", { style: "currency", currency: "VND" });
    $("order-items").replaceChildren(
      ...order.items.map((item) => {
        const li = document.createElement("li");
        li.textContent = `${item.productName} — ${item.variantName} × ${item.quantity}: ${money.format(item.subTotalAmount)}`;
        return li;
      }),
    );
    this.setText($("order-total"), money.format(order.grandTotal));
    $("attempts").replaceChildren(
      ...order.attempts.map((a) => {
        const li = document.createElement("li");
        const status = this.t(`attempt.${a.status}`);
        li.textContent = this.t("attemptRow", { n: a.attemptNo, gateway: GATEWAY_NAMES[a.gateway] ?? a.gateway, status });
        return li;
      }),
    );
    this.setText(
      $("retry-left"),
      session.remainingAttempts > 0
        ? this.t("remainingAttempts", { n: session.remainingAttempts, max: session.maxPaymentAttempts })
        : this.t("noAttemptsLeft"),
    );
    const latest = order.attempts.at(-1);
    const select = $("retry-gateway");
    const offered = this.gateways;
    if (select.dataset.offered !== offered.join()) {
      select.dataset.offered = offered.join();
      select.replaceChildren(
        ...offered.map((g) => {
          const option = document.createElement("option");
          option.value = g;
          option.textContent = GATEWAY_NAMES[g];
          return option;
        }),
      );
    }
    if (latest && select.dataset.attempt !== String(latest.attemptNo)) {
      select.dataset.attempt = latest.attemptNo; // a new attempt: suggest another gateway, once
      select.value = offered.find((g) => g !== latest.gateway) ?? offered[0];
    }
    if (pending) this.tick();
    else this.renderWindow();
  }

  /** What depends on the clock as well as on the order: the state line, the pay and retry buttons. */
  renderWindow() {
    const order = this.order;
    if (!order) return;
    const $ = this.$;
    const pending = order.status === "pending_payment";
    const timeUp = pending && this.remaining() === 0;
    const latest = order.attempts.at(-1);
    const link = $("pay-link");
    link.hidden = !(pending && !timeUp && latest?.status === "pending");
    if (!link.hidden) {
      const gateway = GATEWAY_NAMES[latest.gateway] ?? latest.gateway;
      if (link.href !== latest.paymentUrl) link.href = latest.paymentUrl;
      this.setText(link, this.t("payWith", { gateway }));
      link.setAttribute("aria-label", this.t("payWithLabel", { gateway }));
    }
    $("retry-button").disabled = !order.session.canRetry || timeUp;
    let message = this.t(`final.${order.status}`);
    if (pending) {
      if (timeUp) message = this.t("closing");
      else if (latest && latest.status !== "pending" && latest.status !== "success") message = this.t("lastFailed");
      else message = this.t("payBefore", { time: new Date(order.session.expiresAt).toLocaleTimeString(this.lang === "vi" ? "vi-VN" : "en-GB") });
    }
    this.setText($("state-msg"), message);
    $("state-msg").dataset.status = timeUp ? "closing" : order.status;
  }
}

if (!customElements.get("paywindow-checkout")) customElements.define("paywindow-checkout", PaywindowCheckout);
