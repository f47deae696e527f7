"""The console's words in English and Arabic, and which language a request gets.

The language is chosen like the shopper's return page (``return_page.language`` reads
``Accept-Language``), except that the console's switch wins: ``?lang=`` on any page, then the
cookie the switch leaves behind. Identifiers, amounts, state names and reasons recorded by the
service stay as stored (they are what logs, the API and PayTabs say).
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from paytabs_guard.entrypoints.api.return_page import language

LANGUAGES: Final = ("en", "ar")
LANG_COOKIE: Final = "pg_console_lang"

WORDS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "console": "Operator console",
        "payments": "Payments",
        "breakers": "Circuit breakers",
        "dead_letters": "Dead letters",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "admin_key": "Admin API key",
        "login_hint": "Paste a key from ADMIN_API_KEYS. It is checked once; the browser then "
        "keeps a signed session cookie for 8 hours, never the key.",
        "login_needed": "Sign in with an admin key to use the console.",
        "key_invalid": "That key is not valid.",
        "key_not_admin": "That is a merchant key; the console needs a key from ADMIN_API_KEYS.",
        "too_many_sign_ins": "Too many failed sign-ins from this address; try again in a few "
        "minutes.",
        "search": "Search",
        "reference": "Payment id, cart id or tran_ref",
        "state": "State",
        "any_state": "any",
        "from": "Created from",
        "to": "Created to",
        "no_payments": "No payment matches.",
        "older": "Older",
        "later": "Later",  # the dead letters: oldest first, so the next page died later
        "created": "Created",
        "updated": "Updated",
        "amount": "Amount",
        "description": "Description",
        "cart_id": "Cart id",
        "abandoned": "Earlier cart ids",
        "tran_ref": "tran_ref",
        "captured": "Captured",
        "refunded": "Refunded",
        "metadata": "Metadata",
        "saved_card": "Saved card",
        "hold": "Follow-up in flight",
        "timeline": "Timeline",
        "at": "When",
        "what": "What",
        "detail": "Detail",
        "transition": "State change",
        "gateway_call": "Gateway transaction",
        "conflict": "Contradicting result (kept, not applied)",
        "event": "Event",
        "gateway": "Gateway transactions",
        "status": "Status",
        "type": "Type",
        "response": "PayTabs response",
        "charged": "Charged",
        "latency_note": "The timeline says how long PayTabs took to open the page or charge a "
        "saved card; other calls' latency is not stored per payment (the breakers page shows "
        "percentiles over the rolling window).",
        "received": "Callbacks and returns received",
        "source": "Source",
        "judged": "How it was judged",
        "applied": "applied",
        "conflicted": "conflict: kept for a human, not applied",
        "received_note": "Repeats, stale results and refused deliveries change nothing and are "
        "counted in the metrics, not stored per payment. A browser return never decides: it "
        "makes the service ask PayTabs (source: query).",
        "nothing_received": "No callback, browser return, query or reconciliation has "
        "changed this payment (a recurring charge is decided by PayTabs' direct answer, "
        "source api, in the timeline above).",
        "refunds": "Refunds",
        "no_refunds": "No refund.",
        "events": "Events and deliveries",
        "sink": "Sink",
        "attempts": "Attempts",
        "last_error": "Last error",
        "no_events": "No event yet.",
        "not_handed": "not handed to a sink yet",
        "not_found": "There is no such payment.",
        "chart_title": "State over the last hour",
        "probes": "Recovery probes",
        "since": "Since",
        "window": "Rolling window",
        "calls": "calls",
        "failures": "failures",
        "error_rate": "error rate",
        "latency": "latency p50 / p95",
        "opened": "times opened",
        "interval": "interval",
        "sent": "sent",
        "succeeded": "succeeded",
        "failed": "failed",
        "last_probe": "last",
        "next_probe": "next in",
        "off": "off",
        "history_note": "This instance's history, kept in memory (the last 256 changes per "
        "breaker); another instance or a restart starts its own.",
        "hour_ago": "1 h ago",
        "half_hour_ago": "30 min ago",
        "now": "now",
        "replay": "Replay",
        "replay_all": "Replay all on this page",
        "replayed": "Put back to pending: {n}. The relay sends them again shortly.",
        "no_dead_letters": "No dead letter. Every delivery arrived or is still on its way.",
        "payment": "Payment",
        "dead_at": "Dead since",
        "csrf": "The form expired; reload the page and try again.",
        "bad_date": "Dates are YYYY-MM-DD.",
        "bad_range": "The first date is after the second: no payment can match.",
        "bad_state": "Pick a state from the list.",
        "bad_cursor": "That page link is not valid; start from the first page.",
        "too_many_ids": "Too many dead letters in one replay; replay a page at a time.",
        "refresh": "Refresh",
        "stale": "New data: reload to see it.",
        "id": "id",
        "signed_out": "You are signed out: what this page shows is no longer kept up to date. "
        "Sign in again to see it live.",
        "language": "العربية",
        # Which way "from a to b" and "older" point: the reading direction.
        "onward": "→",
    },
    "ar": {
        "console": "لوحة المشغّل",
        "payments": "المدفوعات",
        "breakers": "قواطع الدائرة",
        "dead_letters": "الرسائل المتعذّر تسليمها",
        "sign_in": "تسجيل الدخول",
        "sign_out": "تسجيل الخروج",
        "admin_key": "مفتاح API للمسؤول",
        "login_hint": "الصق مفتاحًا من ADMIN_API_KEYS. يُتحقق منه مرة واحدة، ثم يحتفظ المتصفح "
        "بملف تعريف ارتباط موقّع لمدة 8 ساعات، وليس بالمفتاح.",
        "login_needed": "سجّل الدخول بمفتاح مسؤول لاستخدام اللوحة.",
        "key_invalid": "هذا المفتاح غير صالح.",
        "key_not_admin": "هذا مفتاح تاجر؛ تحتاج اللوحة إلى مفتاح من ADMIN_API_KEYS.",
        "too_many_sign_ins": "محاولات دخول فاشلة كثيرة من هذا العنوان؛ "
        "حاول مرة أخرى بعد بضع دقائق.",
        "search": "بحث",
        "reference": "معرّف الدفعة أو معرّف السلة أو tran_ref",
        "state": "الحالة",
        "any_state": "أي حالة",
        "from": "أُنشئت من",
        "to": "أُنشئت حتى",
        "no_payments": "لا توجد دفعة مطابقة.",
        "older": "الأقدم",
        "later": "الأحدث",
        "created": "الإنشاء",
        "updated": "آخر تحديث",
        "amount": "المبلغ",
        "description": "الوصف",
        "cart_id": "معرّف السلة",
        "abandoned": "معرّفات السلة السابقة",
        "tran_ref": "tran_ref",
        "captured": "المُحصَّل",
        "refunded": "المُسترد",
        "metadata": "البيانات الوصفية",
        "saved_card": "البطاقة المحفوظة",
        "hold": "عملية متابعة قيد التنفيذ",
        "timeline": "الخط الزمني",
        "at": "الوقت",
        "what": "الحدث",
        "detail": "التفاصيل",
        "transition": "تغيّر الحالة",
        "gateway_call": "معاملة البوابة",
        "conflict": "نتيجة متعارضة (محفوظة، لم تُطبّق)",
        "event": "حدث",
        "gateway": "معاملات البوابة",
        "status": "الحالة",
        "type": "النوع",
        "response": "رد PayTabs",
        "charged": "المبلغ المخصوم",
        "latency_note": "يذكر السجل الزمني المدة التي استغرقتها PayTabs لفتح الصفحة أو لخصم "
        "بطاقة محفوظة؛ ولا يُخزَّن زمن الاستدعاءات الأخرى لكل دفعة (تعرض صفحة القواطع نسب زمن "
        "الاستجابة عبر النافذة المتحركة).",
        "received": "الإشعارات وعمليات العودة المستلمة",
        "source": "المصدر",
        "judged": "كيف قُيّمت",
        "applied": "طُبّقت",
        "conflicted": "تعارض: محفوظة للمراجعة، لم تُطبّق",
        "received_note": "التكرارات والنتائج القديمة والتسليمات المرفوضة لا تغيّر شيئًا وتُحصى "
        "في المقاييس، ولا تُخزَّن لكل دفعة. عودة المتصفح لا تحسم أبدًا: بل تجعل الخدمة تسأل "
        "PayTabs (المصدر: query).",
        "nothing_received": "لم يغيّر هذه الدفعةَ أيُّ إشعار أو عودة متصفح أو استعلام أو "
        "تسوية (الخصم المتكرر يحسمه ردّ PayTabs المباشر، المصدر api، في الخط الزمني أعلاه).",
        "refunds": "المبالغ المستردة",
        "no_refunds": "لا يوجد استرداد.",
        "events": "الأحداث وتسليماتها",
        "sink": "الوجهة",
        "attempts": "المحاولات",
        "last_error": "آخر خطأ",
        "no_events": "لا توجد أحداث بعد.",
        "not_handed": "لم يُسلَّم إلى أي وجهة بعد",
        "not_found": "لا توجد دفعة بهذا المعرّف.",
        "chart_title": "الحالة خلال الساعة الأخيرة",
        "probes": "مجسّات الاستعادة",
        "since": "منذ",
        "window": "النافذة المتحركة",
        "calls": "استدعاءات",
        "failures": "إخفاقات",
        "error_rate": "نسبة الأخطاء",
        "latency": "زمن الاستجابة p50 / p95",
        "opened": "مرات الفتح",
        "interval": "الفاصل",
        "sent": "أُرسلت",
        "succeeded": "نجحت",
        "failed": "فشلت",
        "last_probe": "الأخيرة",
        "next_probe": "التالية بعد",
        "off": "متوقفة",
        "history_note": "سجل هذه النسخة، محفوظ في الذاكرة (آخر 256 تغييرًا لكل قاطع)؛ تبدأ "
        "نسخة أخرى أو إعادة تشغيل سجلها الخاص.",
        "hour_ago": "قبل ساعة",
        "half_hour_ago": "قبل 30 دقيقة",
        "now": "الآن",
        "replay": "إعادة الإرسال",
        "replay_all": "إعادة إرسال كل ما في هذه الصفحة",
        "replayed": "أُعيدت إلى الانتظار: {n}. سيعيد المُرحِّل إرسالها قريبًا.",
        "no_dead_letters": "لا توجد رسائل متعذّر تسليمها. وصل كل تسليم أو ما زال في طريقه.",
        "payment": "الدفعة",
        "dead_at": "متعذّرة منذ",
        "csrf": "انتهت صلاحية النموذج؛ أعد تحميل الصفحة وحاول مرة أخرى.",
        "bad_date": "التواريخ بصيغة YYYY-MM-DD.",
        "bad_range": "التاريخ الأول بعد الثاني: لا يمكن أن تطابقه أي دفعة.",
        "bad_state": "اختر حالة من القائمة.",
        "bad_cursor": "رابط الصفحة غير صالح؛ ابدأ من الصفحة الأولى.",
        "too_many_ids": "رسائل ميتة كثيرة في إعادة واحدة؛ أعد إرسال صفحة في كل مرة.",
        "refresh": "تحديث",
        "stale": "بيانات جديدة: أعد التحميل لرؤيتها.",
        "id": "المعرّف",
        "signed_out": "تم تسجيل خروجك: لم تعد هذه الصفحة تُحدَّث. سجّل الدخول مجددًا لرؤيتها مباشرة.",
        "language": "English",
        "onward": "←",
    },
}


def pick_language(request: Request) -> str:
    """``?lang=``, then the switch's cookie, then ``Accept-Language``."""
    for choice in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if choice in LANGUAGES:
            return str(choice)
    return language(request.headers.get("accept-language"))
