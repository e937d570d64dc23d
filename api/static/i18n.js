// The demo shop's Vietnamese (default) and English texts (the order's payment window has its own,
// in the element: paywindow-checkout.js). Static markup names its text with data-i18n="key"
// (or data-i18n-aria-label / data-i18n-placeholder); scripts call t(key, vars).

const TEXTS = {
  vi: {
    title: "Paywindow — cửa hàng demo",
    langToggle: "English",
    langToggleLabel: "Switch to English",
    customer: "Khách hàng: {sub}",
    catalog: "Sản phẩm",
    loading: "Đang tải…",
    stock: "Còn {n}",
    outOfStock: "Hết hàng",
    add: "Thêm vào giỏ",
    addLabel: "Thêm {name} vào giỏ",
    cart: "Giỏ hàng",
    cartEmpty: "Giỏ hàng trống.",
    remove: "Bỏ",
    removeLabel: "Bỏ {name} khỏi giỏ",
    quantityLabel: "Số lượng {name}",
    total: "Tổng cộng",
    checkout: "Đặt hàng",
    receiver: "Người nhận",
    name: "Họ tên",
    phone: "Số điện thoại",
    address: "Địa chỉ",
    gateway: "Cổng thanh toán",
    orderType: "Loại đơn",
    minutes: "{n} phút",
    seconds: "{n} giây",
    placeOrder: "Đặt hàng và thanh toán",
    placing: "Đang tạo đơn…",
    newOrder: "Đặt đơn mới",
    "error.OUT_OF_STOCK": "Sản phẩm không đủ hàng.",
    "error.VARIANT_UNAVAILABLE": "Sản phẩm này đã ngừng bán.",
    "error.PAYMENT_GATEWAY_ERROR": "Cổng thanh toán không tạo được liên kết. Vui lòng thử cổng khác.",
    "error.ORDER_NOT_FOUND": "Không tìm thấy đơn hàng.",
    "error.VALIDATION_ERROR": "Thông tin chưa hợp lệ: {message}",
    "error.NO_TOKEN": "Không lấy được mã demo (chỉ có khi bật sandbox, ngoài production).",
    "error.NETWORK": "Không kết nối được máy chủ.",
    "error.default": "Có lỗi xảy ra: {message}",
    resultTitle: "Kết quả thanh toán",
    resultGateway: "{gateway} báo: {outcome}",
    resultNote: "Trạng thái cuối cùng của đơn hàng do máy chủ xác nhận — xem đơn hàng để biết.",
    backToOrder: "Xem đơn hàng",
    backToShop: "Về cửa hàng",
    "outcome.success": "thanh toán thành công",
    "outcome.pending": "chưa thanh toán",
    "outcome.processing": "đang xử lý",
    "outcome.failed": "thanh toán thất bại",
    "outcome.cancelled": "đã hủy thanh toán",
    "outcome.expired": "liên kết đã hết hạn",
    "outcome.system_error": "lỗi hệ thống",
  },
  en: {
    title: "Paywindow — demo shop",
    langToggle: "Tiếng Việt",
    langToggleLabel: "Chuyển sang tiếng Việt",
    customer: "Customer: {sub}",
    catalog: "Products",
    loading: "Loading…",
    stock: "{n} left",
    outOfStock: "Out of stock",
    add: "Add to cart",
    addLabel: "Add {name} to cart",
    cart: "Cart",
    cartEmpty: "Your cart is empty.",
    remove: "Remove",
    removeLabel: "Remove {name} from cart",
    quantityLabel: "Quantity of {name}",
    total: "Total",
    checkout: "Checkout",
    receiver: "Receiver",
    name: "Full name",
    phone: "Phone",
    address: "Address",
    gateway: "Payment gateway",
    orderType: "Order type",
    minutes: "{n} min",
    seconds: "{n} s",
    placeOrder: "Place order and pay",
    placing: "Placing order…",
    newOrder: "New order",
    "error.OUT_OF_STOCK": "Not enough stock for this order.",
    "error.VARIANT_UNAVAILABLE": "This product is no longer sold.",
    "error.PAYMENT_GATEWAY_ERROR": "The gateway could not make a payment link. Try another gateway.",
    "error.ORDER_NOT_FOUND": "Order not found.",
    "error.VALIDATION_ERROR": "Please check the form: {message}",
    "error.NO_TOKEN": "No demo token (only with the sandbox on, outside production).",
    "error.NETWORK": "Cannot reach the server.",
    "error.default": "Something went wrong: {message}",
    resultTitle: "Payment result",
    resultGateway: "{gateway} says: {outcome}",
    resultNote: "The server confirms the order's final state — open the order to see it.",
    backToOrder: "View the order",
    backToShop: "Back to the shop",
    "outcome.success": "payment successful",
    "outcome.pending": "not paid yet",
    "outcome.processing": "processing",
    "outcome.failed": "payment failed",
    "outcome.cancelled": "payment cancelled",
    "outcome.expired": "link expired",
    "outcome.system_error": "system error",
  },
};

const STORAGE_KEY = "paywindow.lang";
const listeners = new Set();
let lang = localStorage.getItem(STORAGE_KEY) === "en" ? "en" : "vi";

export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? TEXTS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function has(key) {
  return key in TEXTS[lang];
}

export function currentLang() {
  return lang;
}

/** Fill every data-i18n* element under `root`. */
export function translate(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
  document.title = t("title");
}

export function onLangChange(fn) {
  listeners.add(fn);
}

function setLang(next) {
  lang = next;
  translate();
  for (const fn of listeners) fn(lang);
}

export function toggleLang() {
  localStorage.setItem(STORAGE_KEY, lang === "vi" ? "en" : "vi");
  setLang(localStorage.getItem(STORAGE_KEY));
}

// Other tabs of the shop (the order, the gateway's return page) follow the choice.
window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY) setLang(event.newValue === "en" ? "en" : "vi");
});

/** The language toggle button in the page header. */
export function wireToggle(button) {
  const label = () => {
    button.textContent = t("langToggle");
    button.setAttribute("aria-label", t("langToggleLabel"));
  };
  label();
  onLangChange(label);
  button.addEventListener("click", toggleLang);
}

export function formatTime(iso) {
  return new Date(iso).toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB");
}

export function formatVnd(amount) {
  return new Intl.NumberFormat(lang === "vi" ? "vi-VN" : "en-US", {
    style: "currency",
    currency: "VND",
  }).format(amount);
}
