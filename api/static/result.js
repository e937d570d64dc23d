// Where the gateway's browser return lands (FRONTEND_RETURN_URL): says what the gateway reported
// and links back to the order, whose page shows the state the server confirmed.

import { has, onLangChange, t, translate, wireToggle } from "./i18n.js";

const GATEWAYS = { momo: "MoMo", vnpay: "VNPay", payos: "PayOS" };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function render() {
  const params = new URLSearchParams(location.search);
  const orderId = params.get("orderId") || "";
  const outcome = params.get("outcome") || "";
  const gateway = GATEWAYS[params.get("gateway")] || params.get("gateway") || "";
  const outcomeEl = document.getElementById("outcome");
  outcomeEl.textContent = gateway && has(`outcome.${outcome}`)
    ? t("resultGateway", { gateway, outcome: t(`outcome.${outcome}`) })
    : "";
  outcomeEl.dataset.outcome = outcome;
  const back = document.getElementById("back");
  const known = UUID.test(orderId);
  back.href = known ? `/demo?order=${orderId}` : "/demo";
  back.textContent = known ? t("backToOrder") : t("backToShop");
}

translate();
wireToggle(document.getElementById("lang"));
onLangChange(render);
render();
