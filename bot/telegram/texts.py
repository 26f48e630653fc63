"""Every text the bot sends, in English and German (Telegram HTML).

Parameters are HTML-escaped by `t()` unless wrapped in `Html` (already-safe markup).
A test checks that both languages have the same keys and the same placeholders.
"""

from __future__ import annotations

import html
import string
from typing import Any

LANGUAGES = ("en", "de")


class Html(str):
    """Text that is already valid Telegram HTML and must not be escaped again."""

    __slots__ = ()


TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "start": (
            "👋 <b>Resell Scan bot</b>\n"
            "Send photos of an item (one photo or an album) and I will ask Resell Scan what it "
            "is and what it sells for.\n\n"
            "Caption example: <code>/scan Sneakers purchasePrice=12.5</code>\n"
            "Set a default collection with /use, then plain photos are enough.\n"
            "All commands: /help"
        ),
        "help": (
            "<b>How to scan</b>\n"
            "• Photo or album with caption <code>/scan &lt;collection&gt; [field=value …]</code>\n"
            "• No caption: the chat's default collection (or I ask which one)\n"
            "• Caption with only <code>field=value</code> pairs: default collection\n"
            "• Images sent as files work too (original quality, up to 20 MB)\n\n"
            "<b>Commands</b>\n"
            "/scan &lt;collection&gt; [field=value …] – next photos go there\n"
            "/batch &lt;collection&gt; [field=value …] – collect many items into one analysis; /done sends it\n"
            "/collections [search] – list collections, pick a default\n"
            "/use &lt;name or id&gt; – set this chat's default collection\n"
            "/fields [collection] – manual fields of a collection\n"
            "/status [batch] – open and recent analyses\n"
            "/results &lt;batch&gt; – show results again (CSV for big batches)\n"
            "/find &lt;text&gt; – search what this chat analysed (title, brand, sender …)\n"
            "/report [today|week|month|2026-11-01..2026-11-15] – items, value and margin per member\n"
            "/settings – background removal, language, who may change settings, daily digest"
            " (<code>/settings digest 20:00</code>, <code>/settings timezone Europe/Berlin</code>)\n"
            "/cancel – drop photos that wait for a collection\n"
            "/help – this text"
        ),
        "unauthorized": (
            "⛔ This bot is private.\nYour user id: <code>{user_id}</code>\n"
            "This chat's id: <code>{chat_id}</code>\n"
            "Ask the bot's owner to add one of them to ALLOWED_USER_IDS or ALLOWED_CHAT_IDS."
        ),
        "not_allowed_button": "Not allowed.",
        "privacy_warning": (
            "⚠️ I cannot see album photos without a caption in this group (privacy mode is on "
            "and I am not an admin). Make me an admin, or turn privacy mode off with @BotFather "
            "(/setprivacy → Disable), then remove and re-add me."
        ),
        "analysing": (
            "⏳ Analysing {products} in <b>{collection}</b> for {sender}…\n"
            "Batch <code>{batch}</code>"
        ),
        "analysing_progress": (
            "⏳ Analysing {products} in <b>{collection}</b> for {sender}… {percent}%\n"
            "Batch <code>{batch}</code>"
        ),
        "analysis_done": "✅ Analysis finished for {sender}. Batch <code>{batch}</code>",
        "products_one": "1 product",
        "products_many": "{count} products",
        "photos_one": "1 photo",
        "photos_many": "{count} photos",
        "analyses_one": "1 analysis",
        "analyses_many": "{count} analyses",
        "results_header": "📊 <b>Results</b> for {sender} – <b>{collection}</b> ({photos})",
        "result_title_unknown": "Unknown item",
        "result_brand": "Brand",
        "result_category": "Category",
        "result_condition": "Condition",
        "result_price": "Estimated price",
        "result_confidence": "Confidence",
        "result_failed": "❌ Product {index} failed: {error}",
        "results_summary": (
            "✔️ {ok} of {total} analysed, {failed} failed · success rate {rate}% · {duration}\n"
            "Batch <code>{batch}</code>"
        ),
        "results_csv_caption": "{products}, with every result field.",
        "results_continued": "(continued)",
        "duration_seconds": "{seconds} s",
        "duration_minutes": "{minutes} min {seconds} s",
        "pick_collection": "📁 Which collection should {photos} from {sender} go to?",
        "pick_ambiguous": "🤔 “{ref}” matches several collections. Which one did you mean?",
        "picked": "📁 {collection} chosen for {photos} from {sender}.",
        "pick_gone": "These photos were already handled.",
        "unknown_collection": (
            "❓ No collection matches “{ref}”. See /collections, or check the spelling."
        ),
        "fields_problem_header": "⚠️ The photos from {sender} were not sent to <b>{collection}</b>:",
        "field_missing": "• <code>{key}</code> is required",
        "field_unknown": "• <code>{key}</code> is not a field of this collection",
        "field_unknown_suggest": "• <code>{key}</code> is not a field here – did you mean <code>{suggestion}</code>?",
        "field_number": "• <code>{key}</code> must be a number, not “{value}”",
        "field_integer": "• <code>{key}</code> must be a whole number, not “{value}”",
        "field_boolean": "• <code>{key}</code> must be yes or no, not “{value}”",
        "field_option": "• <code>{key}</code> must be one of: {options} (not “{value}”)",
        "field_example": "This caption would work:\n<code>{example}</code>",
        "caption_problem": "⚠️ I could not read the caption: {reason}\nExample: <code>/scan Sneakers purchasePrice=12.5</code>",
        "caption_unbalanced_quotes": "a quote is not closed",
        "caption_unknown_caption_command": "{command} is not a caption command; use /scan",
        "caption_text_after_fields": "“{text}” comes after the field=value pairs",
        "caption_text_before_fields": "“{text}” is not a field=value pair (start with /scan to name a collection)",
        "caption_bad_pair": "“{pair}” is not a valid field=value pair",
        "caption_empty_value": "<code>{key}</code> has no value",
        "caption_duplicate_field": "<code>{key}</code> is given twice",
        "caption_value_too_long": "<code>{key}</code> is longer than {limit} characters",
        "caption_name_too_long": "the collection name is longer than {limit} characters",
        "too_many_photos": "⚠️ At most {limit} photos per product; this one has {count}.",
        "not_an_image": "⚠️ “{name}” is not an image. Send JPEG, PNG or WebP photos.",
        "file_too_large": "⚠️ “{name}” is larger than 20 MB; Telegram does not let bots download it. Send it as a photo instead.",
        "late_photo": "⚠️ This photo arrived after its album was sent, so it is not part of the analysis.",
        "late_batch": "⏳ This photo came just after your batch in {collection} was sent, so it starts a new batch there. Send more photos and /done (or it goes in {minutes} min), or /cancel.",
        "api_validation": "⚠️ Resell Scan refused the photos: {message}",
        "api_permission": "🔒 The Resell Scan API key lacks the “{resource}” permission. The bot owner can enable it under Developer → API access.",
        "api_auth": "🔒 The Resell Scan API key is invalid, expired or disabled. The bot owner needs to check RESELL_SCAN_API_KEY.",
        "api_tokens": "💳 The Resell Scan account has no tokens left for analyses.",
        "api_error": "⚠️ Resell Scan answered with an error: {message}",
        "api_unreachable": "⚠️ Resell Scan cannot be reached right now; I tried {attempts} times. Please send the photos again later.",
        "photo_unavailable": "⚠️ I could not download the photos from Telegram. Please send them again.",
        "uncertain": (
            "❔ I was interrupted while sending the photos from {sender} to Resell Scan, so I "
            "do not know whether the analysis started. Check /status or Resell Scan; if it is "
            "missing, send them again with the button."
        ),
        "uncertain_ask": (
            "❔ I sent the photos from {sender} to Resell Scan, but {cause}, so I do not know "
            "whether the analysis started. {lookup}. Look in Resell Scan (collection "
            "{collection}); if the photos are not there, send them again with the button."
        ),
        "uncertain_found": (
            "❔ I sent the photos from {sender} to Resell Scan, but {cause}. I checked: they "
            "are in {collection} as {count} product(s), so the upload worked, but I could not "
            "start or confirm their analysis. Start it in Resell Scan's dashboard."
        ),
        "cause_server_error": "Resell Scan answered with a server error ({status})",
        "cause_timeout": "Resell Scan did not answer in time",
        "cause_dropped": "the connection broke off before Resell Scan answered",
        "cause_unreadable": "I could not read Resell Scan's answer",
        "cause_interrupted": "I was interrupted (restarted) while sending them",
        "lookup_permission": "I could not check: the API key lacks the “{resource}” permission",
        "lookup_auth": "I could not check: the API key was refused",
        "lookup_unreachable": "I could not check: Resell Scan did not answer ({error})",
        "lookup_no_proof_cut": (
            "I looked for them and did not find them, but the list was too long to read to its"
            " end, so that proves nothing"
        ),
        "lookup_no_proof_names": (
            "I looked for them and did not find them, but Resell Scan's product lists do not"
            " show file names (or I have not seen them do so yet), so that proves nothing"
        ),
        "lookup_capped": (
            "I did not send them again: Resell Scan was already asked twice for them, and each"
            " time may cost an analysis"
        ),
        "lookup_waited": (
            "; I waited {duration} for Resell Scan's completion message for them, and"
            " {unmatched} completion(s) came that I cannot tie to these photos"
        ),
        "retry_capped": (
            "Resell Scan was already asked twice to analyse these again (each time may cost an"
            " analysis). Look in Resell Scan before trying once more there."
        ),
        "unreachable_waiting": (
            "⏳ Resell Scan cannot be reached right now. I keep the photos from {sender} and send"
            " them as soon as it answers; /status shows them waiting."
        ),
        "api_outage": (
            "⚠️ Resell Scan could not be reached for {hours} hour(s), so I stopped trying with"
            " these photos. When it is back, send them with the button."
        ),
        "status_unreachable": "waiting: Resell Scan cannot be reached; they go out when it answers",
        "api_rate_limited": "⚠️ Resell Scan refused every request (rate limit) for {hours} hour(s); I stopped trying. Please send the photos again later.",
        "state_reconciling": "checking",
        "status_queued": "waiting: Resell Scan is busy; they go out when it takes them",
        "resubmit_button": "🔁 Send again",
        "resubmitted": "🔁 Sending again…",
        "failed": "❌ The analysis of the photos from {sender} failed: {reason}",
        "batch_missing": "Resell Scan no longer knows this batch",
        "expired": (
            "⌛ The analysis for {sender} (batch <code>{batch}</code>) did not finish within "
            "{minutes} minutes. I stopped waiting; use /results {batch} later."
        ),
        "collections_header": "📁 <b>Collections</b> ({count}) – page {page}/{pages}. Tap one to make it this chat's default.",
        "collections_header_search": "📁 <b>Collections matching “{search}”</b> ({count}) – page {page}/{pages}.",
        "collections_none": "No collection matches “{search}”.",
        "default_set": "✅ Default collection: <b>{collection}</b>",
        "fields_header": "📝 <b>{collection}</b> – manual fields (* required):",
        "fields_line": "• <code>{key}</code>{required} – {label} ({kind})",
        "fields_options": "    one of: {options}",
        "fields_none": "📝 <b>{collection}</b> has no manual fields.",
        "use_usage": "Usage: <code>/use &lt;collection name or id&gt;</code> (see /collections), or <code>/use none</code> to clear the default.",
        "fields_usage": "Usage: <code>/fields &lt;collection&gt;</code>, or set a default with /use.",
        "scan_usage": "Usage: <code>/scan &lt;collection&gt; [field=value …]</code> as a caption, or as a message before you send photos.",
        "scan_pending": "📸 For the next {minutes} minutes, your photos in this chat go to <b>{collection}</b>{fields}.",
        "scan_pending_fields": " with {fields}",
        "results_usage": "Usage: <code>/results &lt;batch id&gt;</code>. /status lists them.",
        "batch_not_found": "No batch “{batch}” in this chat.",
        "results_not_ready": "Batch <code>{batch}</code> is not finished yet ({state}).",
        "status_header": "📋 <b>Open analyses</b>",
        "status_none": "No open analyses in this chat.",
        "status_line": "• {state_icon} <code>{batch}</code> {collection} · {sender} · {age}{progress}",
        "status_recent": "<b>Recently finished</b>",
        "status_waiting": "📨 Results ready for {count}, on their way (Telegram limits how fast"
        " the bot may send here).",
        "status_collecting": "collecting {photos} – send /done",
        "board_header": "📋 <b>Being analysed ({count})</b>",
        "board_more": "… and {count} more",
        "board_done": "📋 Nothing being analysed any more.",
        "combined_header": "📊 <b>Results</b> of {count} analyses",
        "combined_item": "👤 {sender} – <b>{collection}</b> ({photos})",
        "combined_summary": "✔️ {ok} of {total} · batch <code>{batch}</code>",
        "combined_all_failed": "❌ none of {total} analysed · batch <code>{batch}</code>",
        "board_line": "{state_icon} {sender} · {collection} · {photos} · {what} · {age}",
        "status_detail": (
            "<b>Batch</b> <code>{batch}</code>\nCollection: {collection}\nFrom: {sender}\n"
            "State: {state}\nProgress: {progress}\nPhotos: {photos}\nAge: {age}"
        ),
        "age_seconds": "{n} s ago",
        "age_minutes": "{n} min ago",
        "age_hours": "{n} h ago",
        "state_received": "waiting",
        "state_submitting": "sending",
        "state_submitted": "analysing",
        "state_completed": "finished",
        "state_notified": "finished",
        "state_rejected": "not sent",
        "state_failed": "failed",
        "state_expired": "expired",
        "state_uncertain": "uncertain",
        "settings": (
            "⚙️ <b>Settings of this chat</b>\nDefault collection: {collection}\n"
            "Background removal: {background}\nLanguage: {language}\n"
            "Settings changed by: {who}\n"
            "“Analysing” message: {analysing} ({reactions})\n"
            "Duplicate guard: {guard}\n"
            "Daily digest: {digest} (time zone {zone})"
        ),
        "settings_analysing_button": "“Analysing” message: {state}",
        "settings_reactions": "reactions 👀 → 👌 show progress either way",
        "settings_reactions_refused": "Telegram refuses the bot's reactions here; they are tried again every 6 hours",
        "settings_guard_button": "Duplicate guard: {state}",
        "settings_digest_button": "Daily digest: {state}",
        "settings_usage": "Change settings with the buttons of /settings, or: <code>/settings digest 20:00</code> (or <code>off</code>), <code>/settings timezone Europe/Berlin</code>.",
        "digest_usage": "Give the digest a time of day, e.g. <code>/settings digest 20:00</code>, or <code>/settings digest off</code>.",
        "timezone_usage": "“{zone}” is not a time zone I know. Use an IANA name such as <code>Europe/Berlin</code> or <code>Europe/Vienna</code>.",
        "digest_heading": "🗓 <b>Daily digest</b>",
        "find_none": "🔎 Nothing analysed here matches “{query}”.",
        "find_empty": "🔎 Nothing analysed in this chat yet.",
        "find_head": "🔎 “{query}”: {total} found, {first}–{last} (best matches first)",
        "find_head_all": "🔎 Analysed here: {total}, {first}–{last} (newest first). /find &lt;text&gt; searches.",
        "find_untitled": "untitled product",
        "find_no_price": "no price",
        "find_here": "☝️ Here: {title}",
        "find_expired": "🔎 This search is too old to page through: send /find again.",
        "report_csv_button": "📄 CSV of the period",
        "report_chart_caption": "📊 Estimated value per day and member",
        "settings_clear_default": "🗑 Clear default collection",
        "default_cleared": "✅ No default collection any more: photos without a caption get a picker.",
        "retry_button": "🔁 Retry failed ({count})",
        "retry_started": "🔁 Analysing the {count} failed product(s) again…",
        "retry_used": "Already retried.",
        "retry_failed_start": "⚠️ I could not start the retry: {message}",
        "listing_button": "📋 Listing text",
        "listing_send_button": "💬 Listing text as a message",
        "listing_all_button": "📋 Listing texts",
        "listing_none": "No analysed product to write a listing for.",
        "duplicate_found": "🔁 {sender}, these photos were already analysed on {when} in <b>{collection}</b> (batch <code>{batch}</code>). Nothing is sent until you choose.",
        "duplicate_running": "🔁 {sender}, these photos are being analysed already (sent on {when} to <b>{collection}</b>). Nothing is sent until you choose.",
        "duplicate_show": "Show results",
        "duplicate_again": "Analyse again",
        "fields_wanted": "✍️ {collection} needs more details for the photos from {sender}. Reply to this message with <code>{fields}</code> (e.g. <code>{example}</code>); I keep the photos until then (/cancel drops them).",
        "results_all_failed": "❌ The analysis of {count} product(s) failed (batch <code>{batch}</code>). A clearer photo usually helps: good light, the whole item, the label readable. Tap 🔁 Retry to analyse them again.",
        "edit_too_late": "ℹ️ These photos were already sent to Resell Scan, so the edited caption changes nothing. To analyse failed items again use 🔁 Retry under the results, or send the photos again.",
        "edit_applied": "✏️ Caption updated: {what}.",
        "reply_fields_usage": "To fix it, reply with only <code>field=value</code> pairs, e.g. <code>purchasePrice=12.5 size=42</code>.",
        "caption_ignored": "ℹ️ This album already has the caption “{applied}”; yours was ignored. Edit the first caption to change it.",
        "batch_replaced": "📦 Your open batch in {collection} ({photos}) was sent first.",
        "cancelled_scan": "🗑 Cancelled: your next photos no longer go to a chosen collection.",
        "settings_none": "none",
        "settings_on": "on",
        "settings_off": "off",
        "settings_admins": "admins only",
        "settings_everyone": "everyone",
        "settings_bg_button": "Background removal: {state}",
        "settings_lang_button": "Deutsch",
        "settings_admin_button": "Changes: {who}",
        "admins_only": "🔒 Only the chat's admins may change settings here.",
        "cancelled": "🗑 Dropped {count} waiting submission(s).",
        "nothing_to_cancel": "Nothing waiting to cancel.",
        "csv_button": "📄 CSV",
        "page_prev": "◀",
        "page_next": "▶",
        "cmd_scan": "scan photos into a collection",
        "cmd_batch": "collect many items into one analysis",
        "cmd_done": "send the collected batch",
        "batch_open": "🧺 Collecting for <b>{collection}</b>{fields}: every photo or album you send now is one product. Send /done when finished (I send it by myself after {minutes} minutes).",
        "batch_usage": "Usage: <code>/batch &lt;collection&gt; [field=value …]</code>, then photos, then /done.",
        "batch_closed": "📦 Sending {products} to <b>{collection}</b>…",
        "batch_none": "No batch is being collected. Start one with /batch &lt;collection&gt;.",
        "too_many_products": "⚠️ At most {limit} products per batch; this one has {count}. Split it into smaller batches.",
        "cmd_collections": "list collections",
        "cmd_use": "set the default collection",
        "cmd_fields": "manual fields of a collection",
        "cmd_status": "open and recent analyses",
        "cmd_results": "show results again",
        "cmd_settings": "chat settings",
        "cmd_find": "search what this chat analysed",
        "cmd_report": "what the team analysed: items, value, margin",
        "cmd_cancel": "drop waiting photos",
        "cmd_help": "how to use the bot",
        "cmd_start": "start",
        "results_unreadable": (
            "📊 The analysis for {sender} in {collection} (batch <code>{batch}</code>) has "
            "finished, but I could not read its results: Resell Scan answered in a form I do "
            "not understand. /results {batch} shows whatever I could read, and its CSV holds "
            "every field Resell Scan sent; the Resell Scan dashboard has the full analysis."
        ),
        "request_invalid": (
            "⚠️ I could not build the request to Resell Scan for these photos (nothing was "
            "sent). Check the values in your caption and send the photos again."
        ),
        "photo_too_big": (
            "⚠️ Telegram does not let bots download files over 20 MB. Send the picture as a "
            "photo (not as a file), or a smaller file."
        ),
        "field_range": "• <code>{key}</code> is out of range: “{value}”",
        "field_price_negative": "• <code>{key}</code> is a price, so 0 or more: “{value}”",
        "field_price_max": "• <code>{key}</code> is above the highest price allowed ({limit}): “{value}”",
        "heic_unsupported": (
            "⚠️ “{name}” is a HEIC/HEIF image, which I cannot convert here. Send it as a photo "
            "(Telegram converts it), or as JPEG or PNG."
        ),
        "stale_button": "This button is no longer valid.",
        "button_not_yours": "Only {sender} (who sent the photos) or an admin of this chat can use this button.",
        "duplicate_chose_again": "🔁 These photos are being analysed again.",
        "duplicate_cancelled": "🗑 These photos were not sent (/cancel).",
        "duplicate_chose_show": "📄 The earlier results are shown below; these photos were not sent again.",
        "duplicate_chose_wait": "📄 These photos were not sent again: their results come in the reply to the earlier ones.",
        "reply_not_yours": "Only {sender} (or an admin of this chat) can answer this for their photos.",
        "batch_fields_problem": "⚠️ The /batch into <b>{collection}</b> was not started:",
        "error_generic": "⚠️ Something went wrong on my side. Please try again.",
        "collections_unavailable": "⚠️ I cannot load the collections from Resell Scan right now: {message}",
    },
    "de": {
        "start": (
            "👋 <b>Resell-Scan-Bot</b>\n"
            "Schick Fotos eines Artikels (ein Foto oder ein Album), und ich frage Resell Scan, "
            "was es ist und wofür es sich verkauft.\n\n"
            "Beispiel-Bildunterschrift: <code>/scan Sneakers purchasePrice=12,5</code>\n"
            "Mit /use legst du eine Standard-Sammlung fest, dann reichen Fotos ohne Text.\n"
            "Alle Befehle: /help"
        ),
        "help": (
            "<b>So scannst du</b>\n"
            "• Foto oder Album mit Bildunterschrift <code>/scan &lt;Sammlung&gt; [feld=wert …]</code>\n"
            "• Ohne Bildunterschrift: die Standard-Sammlung des Chats (oder ich frage nach)\n"
            "• Nur <code>feld=wert</code>-Paare: Standard-Sammlung\n"
            "• Bilder als Datei gehen auch (Originalqualität, bis 20 MB)\n\n"
            "<b>Befehle</b>\n"
            "/scan &lt;Sammlung&gt; [feld=wert …] – die nächsten Fotos gehen dorthin\n"
            "/batch &lt;Sammlung&gt; [feld=wert …] – viele Artikel in einer Analyse sammeln; /done sendet sie\n"
            "/collections [Suche] – Sammlungen auflisten, Standard wählen\n"
            "/use &lt;Name oder ID&gt; – Standard-Sammlung dieses Chats festlegen\n"
            "/fields [Sammlung] – manuelle Felder einer Sammlung\n"
            "/status [Batch] – laufende und letzte Analysen\n"
            "/results &lt;Batch&gt; – Ergebnisse erneut zeigen (CSV bei großen Batches)\n"
            "/find &lt;Text&gt; – durchsuchen, was dieser Chat analysiert hat (Titel, Marke, Absender …)\n"
            "/report [heute|woche|monat|01.11.2026..15.11.2026] – Artikel, Wert und Marge je Mitglied\n"
            "/settings – Hintergrundentfernung, Sprache, wer Einstellungen ändern darf, Tagesbericht"
            " (<code>/settings digest 20:00</code>, <code>/settings timezone Europe/Berlin</code>)\n"
            "/cancel – wartende Fotos verwerfen\n"
            "/help – dieser Text"
        ),
        "unauthorized": (
            "⛔ Dieser Bot ist privat.\nDeine Nutzer-ID: <code>{user_id}</code>\n"
            "ID dieses Chats: <code>{chat_id}</code>\n"
            "Bitte den Betreiber, eine davon in ALLOWED_USER_IDS oder ALLOWED_CHAT_IDS einzutragen."
        ),
        "not_allowed_button": "Nicht erlaubt.",
        "privacy_warning": (
            "⚠️ In dieser Gruppe sehe ich Albumfotos ohne Bildunterschrift nicht (Privatsphäre-"
            "Modus ist an und ich bin kein Admin). Mach mich zum Admin oder schalte den Modus bei "
            "@BotFather aus (/setprivacy → Disable) und füge mich neu hinzu."
        ),
        "analysing": (
            "⏳ Analysiere {products} in <b>{collection}</b> für {sender}…\n"
            "Batch <code>{batch}</code>"
        ),
        "analysing_progress": (
            "⏳ Analysiere {products} in <b>{collection}</b> für {sender}… {percent} %\n"
            "Batch <code>{batch}</code>"
        ),
        "analysis_done": "✅ Analyse für {sender} fertig. Batch <code>{batch}</code>",
        "products_one": "1 Produkt",
        "products_many": "{count} Produkte",
        "photos_one": "1 Foto",
        "photos_many": "{count} Fotos",
        "analyses_one": "1 Analyse",
        "analyses_many": "{count} Analysen",
        "results_header": "📊 <b>Ergebnisse</b> für {sender} – <b>{collection}</b> ({photos})",
        "result_title_unknown": "Unbekannter Artikel",
        "result_brand": "Marke",
        "result_category": "Kategorie",
        "result_condition": "Zustand",
        "result_price": "Geschätzter Preis",
        "result_confidence": "Sicherheit",
        "result_failed": "❌ Produkt {index} fehlgeschlagen: {error}",
        "results_summary": (
            "✔️ {ok} von {total} analysiert, {failed} fehlgeschlagen · Erfolgsquote {rate} % · "
            "{duration}\nBatch <code>{batch}</code>"
        ),
        "results_csv_caption": "{products} mit allen Ergebnisfeldern.",
        "results_continued": "(Fortsetzung)",
        "duration_seconds": "{seconds} s",
        "duration_minutes": "{minutes} min {seconds} s",
        "pick_collection": "📁 Welche Sammlung für {photos} von {sender}?",
        "pick_ambiguous": "🤔 „{ref}“ passt zu mehreren Sammlungen. Welche meinst du?",
        "picked": "📁 {collection} gewählt für {photos} von {sender}.",
        "pick_gone": "Diese Fotos wurden schon bearbeitet.",
        "unknown_collection": (
            "❓ Keine Sammlung passt zu „{ref}“. Siehe /collections oder prüfe die Schreibweise."
        ),
        "fields_problem_header": "⚠️ Die Fotos von {sender} wurden nicht an <b>{collection}</b> gesendet:",
        "field_missing": "• <code>{key}</code> ist ein Pflichtfeld",
        "field_unknown": "• <code>{key}</code> ist kein Feld dieser Sammlung",
        "field_unknown_suggest": "• <code>{key}</code> gibt es hier nicht – meintest du <code>{suggestion}</code>?",
        "field_number": "• <code>{key}</code> muss eine Zahl sein, nicht „{value}“",
        "field_integer": "• <code>{key}</code> muss eine ganze Zahl sein, nicht „{value}“",
        "field_boolean": "• <code>{key}</code> muss ja oder nein sein, nicht „{value}“",
        "field_option": "• <code>{key}</code> muss eines davon sein: {options} (nicht „{value}“)",
        "field_example": "So würde es gehen:\n<code>{example}</code>",
        "caption_problem": "⚠️ Ich verstehe die Bildunterschrift nicht: {reason}\nBeispiel: <code>/scan Sneakers purchasePrice=12,5</code>",
        "caption_unbalanced_quotes": "ein Anführungszeichen ist nicht geschlossen",
        "caption_unknown_caption_command": "{command} ist kein Befehl für Bildunterschriften; nimm /scan",
        "caption_text_after_fields": "„{text}“ steht nach den feld=wert-Paaren",
        "caption_text_before_fields": "„{text}“ ist kein feld=wert-Paar (beginne mit /scan, um eine Sammlung zu nennen)",
        "caption_bad_pair": "„{pair}“ ist kein gültiges feld=wert-Paar",
        "caption_empty_value": "<code>{key}</code> hat keinen Wert",
        "caption_duplicate_field": "<code>{key}</code> steht doppelt da",
        "caption_value_too_long": "<code>{key}</code> ist länger als {limit} Zeichen",
        "caption_name_too_long": "der Name der Sammlung ist länger als {limit} Zeichen",
        "too_many_photos": "⚠️ Höchstens {limit} Fotos pro Produkt; hier sind es {count}.",
        "not_an_image": "⚠️ „{name}“ ist kein Bild. Schick JPEG-, PNG- oder WebP-Fotos.",
        "file_too_large": "⚠️ „{name}“ ist größer als 20 MB; Telegram lässt Bots das nicht herunterladen. Schick es als Foto.",
        "late_photo": "⚠️ Dieses Foto kam, nachdem sein Album schon gesendet war; es gehört nicht zur Analyse.",
        "late_batch": "⏳ Dieses Foto kam kurz nachdem dein Batch in {collection} gesendet wurde, daher beginnt es dort einen neuen Batch. Schick weitere Fotos und /done (sonst geht er in {minutes} Min.), oder /cancel.",
        "api_validation": "⚠️ Resell Scan hat die Fotos abgelehnt: {message}",
        "api_permission": "🔒 Dem Resell-Scan-API-Schlüssel fehlt die Berechtigung „{resource}“. Der Betreiber kann sie unter Entwickler → API-Zugang freischalten.",
        "api_auth": "🔒 Der Resell-Scan-API-Schlüssel ist ungültig, abgelaufen oder deaktiviert. Der Betreiber muss RESELL_SCAN_API_KEY prüfen.",
        "api_tokens": "💳 Das Resell-Scan-Konto hat keine Tokens mehr für Analysen.",
        "api_error": "⚠️ Resell Scan meldet einen Fehler: {message}",
        "api_unreachable": "⚠️ Resell Scan ist gerade nicht erreichbar; ich habe es {attempts}-mal versucht. Bitte schick die Fotos später noch einmal.",
        "photo_unavailable": "⚠️ Ich konnte die Fotos nicht von Telegram laden. Bitte schick sie noch einmal.",
        "uncertain": (
            "❔ Ich wurde beim Senden der Fotos von {sender} an Resell Scan unterbrochen und weiß "
            "nicht, ob die Analyse gestartet ist. Prüfe /status oder Resell Scan; falls sie fehlt, "
            "sende sie mit dem Knopf erneut."
        ),
        "uncertain_ask": (
            "❔ Ich habe die Fotos von {sender} an Resell Scan geschickt, aber {cause}, daher "
            "weiß ich nicht, ob die Analyse gestartet ist. {lookup}. Schau in Resell Scan "
            "nach (Sammlung {collection}); falls die Fotos fehlen, sende sie mit dem Knopf erneut."
        ),
        "uncertain_found": (
            "❔ Ich habe die Fotos von {sender} an Resell Scan geschickt, aber {cause}. Ich habe "
            "nachgesehen: Sie sind in {collection} als {count} Produkt(e) angekommen, aber ich "
            "konnte ihre Analyse weder starten noch bestätigen. Starte sie im Resell-Scan-Dashboard."
        ),
        "cause_server_error": "Resell Scan antwortete mit einem Serverfehler ({status})",
        "cause_timeout": "Resell Scan antwortete nicht rechtzeitig",
        "cause_dropped": "die Verbindung brach ab, bevor Resell Scan antwortete",
        "cause_unreadable": "ich konnte die Antwort von Resell Scan nicht lesen",
        "cause_interrupted": "ich wurde beim Senden unterbrochen (Neustart)",
        "lookup_permission": "Nachsehen ging nicht: dem API-Schlüssel fehlt die Berechtigung „{resource}“",
        "lookup_auth": "Nachsehen ging nicht: der API-Schlüssel wurde abgelehnt",
        "lookup_unreachable": "Nachsehen ging nicht: Resell Scan antwortete nicht ({error})",
        "lookup_no_proof_cut": (
            "Ich habe sie gesucht und nicht gefunden, aber die Liste war zu lang, um sie ganz zu"
            " lesen, das beweist also nichts"
        ),
        "lookup_no_proof_names": (
            "Ich habe sie gesucht und nicht gefunden, aber die Produktlisten von Resell Scan"
            " zeigen keine Dateinamen (oder ich habe es noch nicht gesehen), das beweist also"
            " nichts"
        ),
        "lookup_capped": (
            "Ich habe sie nicht noch einmal geschickt: Resell Scan wurde schon zweimal gefragt,"
            " und jedes Mal kann eine Analyse kosten"
        ),
        "lookup_waited": (
            "; ich habe {duration} auf die Fertig-Meldung von Resell Scan gewartet, und"
            " {unmatched} Meldung(en) kamen, die ich diesen Fotos nicht zuordnen kann"
        ),
        "retry_capped": (
            "Resell Scan wurde schon zweimal gebeten, diese erneut zu analysieren (jedes Mal kann"
            " eine Analyse kosten). Schau in Resell Scan nach, bevor du es dort noch einmal"
            " versuchst."
        ),
        "unreachable_waiting": (
            "⏳ Resell Scan ist gerade nicht erreichbar. Ich behalte die Fotos von {sender} und"
            " schicke sie, sobald es wieder antwortet; /status zeigt sie als wartend."
        ),
        "api_outage": (
            "⚠️ Resell Scan war {hours} Stunde(n) lang nicht erreichbar, daher habe ich aufgehört,"
            " diese Fotos zu senden. Wenn es wieder geht, schick sie mit dem Knopf."
        ),
        "status_unreachable": "wartet: Resell Scan ist nicht erreichbar; sie gehen raus, sobald es antwortet",
        "api_rate_limited": "⚠️ Resell Scan hat {hours} Stunde(n) lang jede Anfrage abgelehnt (Ratenlimit); ich habe aufgehört. Bitte schick die Fotos später noch einmal.",
        "state_reconciling": "wird geprüft",
        "status_queued": "wartet: Resell Scan ist ausgelastet; sie gehen raus, sobald es sie annimmt",
        "resubmit_button": "🔁 Erneut senden",
        "resubmitted": "🔁 Sende erneut…",
        "failed": "❌ Die Analyse der Fotos von {sender} ist fehlgeschlagen: {reason}",
        "batch_missing": "Resell Scan kennt diesen Batch nicht mehr",
        "expired": (
            "⌛ Die Analyse für {sender} (Batch <code>{batch}</code>) war nach {minutes} Minuten "
            "nicht fertig. Ich warte nicht mehr; probier später /results {batch}."
        ),
        "collections_header": "📁 <b>Sammlungen</b> ({count}) – Seite {page}/{pages}. Tippe eine an, um sie zur Standard-Sammlung zu machen.",
        "collections_header_search": "📁 <b>Sammlungen mit „{search}“</b> ({count}) – Seite {page}/{pages}.",
        "collections_none": "Keine Sammlung passt zu „{search}“.",
        "default_set": "✅ Standard-Sammlung: <b>{collection}</b>",
        "fields_header": "📝 <b>{collection}</b> – manuelle Felder (* Pflicht):",
        "fields_line": "• <code>{key}</code>{required} – {label} ({kind})",
        "fields_options": "    eines von: {options}",
        "fields_none": "📝 <b>{collection}</b> hat keine manuellen Felder.",
        "use_usage": "So geht's: <code>/use &lt;Sammlungsname oder ID&gt;</code> (siehe /collections), oder <code>/use keine</code> zum Entfernen.",
        "fields_usage": "So geht's: <code>/fields &lt;Sammlung&gt;</code>, oder lege mit /use einen Standard fest.",
        "scan_usage": "So geht's: <code>/scan &lt;Sammlung&gt; [feld=wert …]</code> als Bildunterschrift oder als Nachricht vor den Fotos.",
        "scan_pending": "📸 In den nächsten {minutes} Minuten gehen deine Fotos in diesem Chat an <b>{collection}</b>{fields}.",
        "scan_pending_fields": " mit {fields}",
        "results_usage": "So geht's: <code>/results &lt;Batch-ID&gt;</code>. /status listet sie auf.",
        "batch_not_found": "Kein Batch „{batch}“ in diesem Chat.",
        "results_not_ready": "Batch <code>{batch}</code> ist noch nicht fertig ({state}).",
        "status_header": "📋 <b>Laufende Analysen</b>",
        "status_none": "Keine laufenden Analysen in diesem Chat.",
        "status_line": "• {state_icon} <code>{batch}</code> {collection} · {sender} · {age}{progress}",
        "status_recent": "<b>Zuletzt fertig</b>",
        "status_waiting": "📨 Ergebnisse für {count} sind fertig und unterwegs (Telegram begrenzt,"
        " wie schnell der Bot hier senden darf).",
        "status_collecting": "sammelt {photos} – sende /done",
        "board_header": "📋 <b>Wird analysiert ({count})</b>",
        "board_more": "… und {count} weitere",
        "board_done": "📋 Es wird nichts mehr analysiert.",
        "combined_header": "📊 <b>Ergebnisse</b> von {count} Analysen",
        "combined_item": "👤 {sender} – <b>{collection}</b> ({photos})",
        "combined_summary": "✔️ {ok} von {total} · Batch <code>{batch}</code>",
        "combined_all_failed": "❌ keins von {total} analysiert · Batch <code>{batch}</code>",
        "board_line": "{state_icon} {sender} · {collection} · {photos} · {what} · {age}",
        "status_detail": (
            "<b>Batch</b> <code>{batch}</code>\nSammlung: {collection}\nVon: {sender}\n"
            "Status: {state}\nFortschritt: {progress}\nFotos: {photos}\nAlter: {age}"
        ),
        "age_seconds": "vor {n} s",
        "age_minutes": "vor {n} min",
        "age_hours": "vor {n} h",
        "state_received": "wartet",
        "state_submitting": "wird gesendet",
        "state_submitted": "wird analysiert",
        "state_completed": "fertig",
        "state_notified": "fertig",
        "state_rejected": "nicht gesendet",
        "state_failed": "fehlgeschlagen",
        "state_expired": "abgelaufen",
        "state_uncertain": "unklar",
        "settings": (
            "⚙️ <b>Einstellungen dieses Chats</b>\nStandard-Sammlung: {collection}\n"
            "Hintergrundentfernung: {background}\nSprache: {language}\n"
            "Einstellungen ändern: {who}\n"
            "„Analysiere“-Nachricht: {analysing} ({reactions})\n"
            "Duplikat-Schutz: {guard}\n"
            "Tagesbericht: {digest} (Zeitzone {zone})"
        ),
        "settings_analysing_button": "„Analysiere“-Nachricht: {state}",
        "settings_reactions": "Reaktionen 👀 → 👌 zeigen den Stand so oder so",
        "settings_reactions_refused": "Telegram lässt hier keine Reaktionen des Bots zu; sie werden alle 6 Stunden neu versucht",
        "settings_guard_button": "Duplikat-Schutz: {state}",
        "settings_digest_button": "Tagesbericht: {state}",
        "settings_usage": "Ändere Einstellungen mit den Knöpfen von /settings oder so: <code>/settings digest 20:00</code> (oder <code>aus</code>), <code>/settings timezone Europe/Berlin</code>.",
        "digest_usage": "Gib dem Tagesbericht eine Uhrzeit, z. B. <code>/settings digest 20:00</code>, oder <code>/settings digest aus</code>.",
        "timezone_usage": "„{zone}“ ist keine Zeitzone, die ich kenne. Nimm einen IANA-Namen wie <code>Europe/Berlin</code> oder <code>Europe/Vienna</code>.",
        "digest_heading": "🗓 <b>Tagesbericht</b>",
        "find_none": "🔎 Nichts hier Analysiertes passt zu „{query}“.",
        "find_empty": "🔎 In diesem Chat wurde noch nichts analysiert.",
        "find_head": "🔎 „{query}“: {total} gefunden, {first}–{last} (beste Treffer zuerst)",
        "find_head_all": "🔎 Hier analysiert: {total}, {first}–{last} (neueste zuerst). /find &lt;Text&gt; sucht.",
        "find_untitled": "Produkt ohne Titel",
        "find_no_price": "kein Preis",
        "find_here": "☝️ Hier: {title}",
        "find_expired": "🔎 Diese Suche ist zu alt zum Blättern: sende /find noch einmal.",
        "report_csv_button": "📄 CSV des Zeitraums",
        "report_chart_caption": "📊 Geschätzter Wert pro Tag und Mitglied",
        "settings_clear_default": "🗑 Standard-Sammlung entfernen",
        "default_cleared": "✅ Keine Standard-Sammlung mehr: Fotos ohne Bildunterschrift bekommen eine Auswahl.",
        "retry_button": "🔁 Fehlgeschlagene erneut ({count})",
        "retry_started": "🔁 Analysiere die {count} fehlgeschlagenen Produkt(e) erneut…",
        "retry_used": "Schon erneut versucht.",
        "retry_failed_start": "⚠️ Ich konnte die Wiederholung nicht starten: {message}",
        "listing_button": "📋 Anzeigentext",
        "listing_send_button": "💬 Anzeigentext als Nachricht",
        "listing_all_button": "📋 Anzeigentexte",
        "listing_none": "Kein analysiertes Produkt für einen Anzeigentext.",
        "duplicate_found": "🔁 {sender}, diese Fotos wurden schon am {when} in <b>{collection}</b> analysiert (Batch <code>{batch}</code>). Ich sende nichts, bis du wählst.",
        "duplicate_running": "🔁 {sender}, diese Fotos werden schon analysiert (geschickt am {when} an <b>{collection}</b>). Ich sende nichts, bis du wählst.",
        "duplicate_show": "Ergebnisse zeigen",
        "duplicate_again": "Neu analysieren",
        "fields_wanted": "✍️ {collection} braucht noch Angaben zu den Fotos von {sender}. Antworte auf diese Nachricht mit <code>{fields}</code> (z. B. <code>{example}</code>); bis dahin behalte ich die Fotos (/cancel verwirft sie).",
        "results_all_failed": "❌ Die Analyse von {count} Produkt(en) ist fehlgeschlagen (Batch <code>{batch}</code>). Ein klareres Foto hilft meist: gutes Licht, der ganze Artikel, das Etikett lesbar. Tippe 🔁 Erneut, um sie noch einmal zu analysieren.",
        "edit_too_late": "ℹ️ Diese Fotos sind schon bei Resell Scan, daher ändert die bearbeitete Bildunterschrift nichts. Fehlgeschlagene Artikel analysierst du mit 🔁 unter den Ergebnissen erneut, oder schick die Fotos noch einmal.",
        "edit_applied": "✏️ Bildunterschrift übernommen: {what}.",
        "reply_fields_usage": "Zum Korrigieren antworte nur mit <code>feld=wert</code>-Paaren, z. B. <code>purchasePrice=12,5 size=42</code>.",
        "caption_ignored": "ℹ️ Dieses Album hat schon die Bildunterschrift „{applied}“; deine wurde ignoriert. Bearbeite die erste, um sie zu ändern.",
        "batch_replaced": "📦 Dein offener Batch in {collection} ({photos}) wurde zuerst gesendet.",
        "cancelled_scan": "🗑 Abgebrochen: deine nächsten Fotos gehen nicht mehr an eine gewählte Sammlung.",
        "settings_none": "keine",
        "settings_on": "an",
        "settings_off": "aus",
        "settings_admins": "nur Admins",
        "settings_everyone": "alle",
        "settings_bg_button": "Hintergrundentfernung: {state}",
        "settings_lang_button": "English",
        "settings_admin_button": "Ändern: {who}",
        "admins_only": "🔒 Nur Admins dürfen hier Einstellungen ändern.",
        "cancelled": "🗑 {count} wartende Einsendung(en) verworfen.",
        "nothing_to_cancel": "Nichts Wartendes zum Verwerfen.",
        "csv_button": "📄 CSV",
        "page_prev": "◀",
        "page_next": "▶",
        "cmd_scan": "Fotos in eine Sammlung scannen",
        "cmd_batch": "viele Artikel in einer Analyse sammeln",
        "cmd_done": "gesammelten Batch senden",
        "batch_open": "🧺 Sammle für <b>{collection}</b>{fields}: jedes Foto oder Album, das du jetzt schickst, ist ein Produkt. Schick /done, wenn du fertig bist (nach {minutes} Minuten sende ich selbst).",
        "batch_usage": "So geht's: <code>/batch &lt;Sammlung&gt; [feld=wert …]</code>, dann Fotos, dann /done.",
        "batch_closed": "📦 Sende {products} an <b>{collection}</b>…",
        "batch_none": "Es wird gerade kein Batch gesammelt. Starte einen mit /batch &lt;Sammlung&gt;.",
        "too_many_products": "⚠️ Höchstens {limit} Produkte pro Batch; hier sind es {count}. Teile ihn in kleinere Batches.",
        "cmd_collections": "Sammlungen auflisten",
        "cmd_use": "Standard-Sammlung festlegen",
        "cmd_fields": "manuelle Felder einer Sammlung",
        "cmd_status": "laufende und letzte Analysen",
        "cmd_results": "Ergebnisse erneut zeigen",
        "cmd_settings": "Chat-Einstellungen",
        "cmd_find": "durchsuchen, was dieser Chat analysiert hat",
        "cmd_report": "was das Team analysiert hat: Artikel, Wert, Marge",
        "cmd_cancel": "wartende Fotos verwerfen",
        "cmd_help": "Hilfe zum Bot",
        "cmd_start": "Start",
        "results_unreadable": (
            "📊 Die Analyse für {sender} in {collection} (Batch <code>{batch}</code>) ist "
            "fertig, aber ich konnte die Ergebnisse nicht lesen: Resell Scan antwortete in einer "
            "Form, die ich nicht verstehe. /results {batch} zeigt, was ich lesen konnte, und die "
            "CSV enthält alle Felder, die Resell Scan geschickt hat; im Resell-Scan-Dashboard "
            "steht die ganze Analyse."
        ),
        "request_invalid": (
            "⚠️ Ich konnte die Anfrage an Resell Scan für diese Fotos nicht bauen (es wurde "
            "nichts gesendet). Prüf die Werte in deiner Bildunterschrift und schick die Fotos "
            "noch einmal."
        ),
        "photo_too_big": (
            "⚠️ Telegram lässt Bots keine Dateien über 20 MB laden. Schick das Bild als Foto "
            "(nicht als Datei) oder eine kleinere Datei."
        ),
        "field_range": "• <code>{key}</code> liegt außerhalb des Bereichs: „{value}“",
        "field_price_negative": "• <code>{key}</code> ist ein Preis, also 0 oder mehr: „{value}“",
        "field_price_max": "• <code>{key}</code> liegt über dem höchsten erlaubten Preis ({limit}): „{value}“",
        "heic_unsupported": (
            "⚠️ „{name}“ ist ein HEIC/HEIF-Bild, das ich hier nicht umwandeln kann. Schick es "
            "als Foto (Telegram wandelt es um) oder als JPEG oder PNG."
        ),
        "stale_button": "Dieser Knopf gilt nicht mehr.",
        "button_not_yours": "Nur {sender} (hat die Fotos geschickt) oder ein Admin dieses Chats kann diesen Knopf nutzen.",
        "duplicate_chose_again": "🔁 Diese Fotos werden noch einmal analysiert.",
        "duplicate_cancelled": "🗑 Diese Fotos wurden nicht geschickt (/cancel).",
        "duplicate_chose_show": "📄 Die früheren Ergebnisse stehen unten; diese Fotos wurden nicht noch einmal geschickt.",
        "duplicate_chose_wait": "📄 Diese Fotos wurden nicht noch einmal geschickt: ihre Ergebnisse kommen in der Antwort auf die früheren.",
        "reply_not_yours": "Nur {sender} (oder ein Admin dieses Chats) kann das für die eigenen Fotos beantworten.",
        "batch_fields_problem": "⚠️ Der /batch in <b>{collection}</b> wurde nicht begonnen:",
        "error_generic": "⚠️ Bei mir ist etwas schiefgegangen. Bitte versuch es noch einmal.",
        "collections_unavailable": "⚠️ Ich kann die Sammlungen gerade nicht von Resell Scan laden: {message}",
    },
}

COMMANDS = (
    "scan",
    "batch",
    "done",
    "collections",
    "use",
    "fields",
    "status",
    "results",
    "find",
    "report",
    "settings",
    "cancel",
    "help",
    "start",
)


def language_for(
    chat_language: str | None, user_language: str | None, default: str, *, group: bool = False
) -> str:
    """The chat's language if set; in a private chat the user's; a group speaks one language
    (its setting, else the default: not each sender's, which would mix languages)."""
    if chat_language in LANGUAGES:
        return chat_language
    if group:
        return default
    if user_language and user_language.lower().startswith("de"):
        return "de"
    if user_language and user_language.lower().startswith("en"):
        return "en"
    return default


def t(lang: str, name: str, /, **params: Any) -> str:
    """The text `name` in `lang`, parameters escaped for Telegram HTML."""
    table = TEXTS.get(lang, TEXTS["en"])
    template = table.get(name) or TEXTS["en"][name]
    safe = {
        name: value if isinstance(value, Html) else html.escape(str(value), quote=False)
        for name, value in params.items()
    }
    return template.format(**safe)


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
