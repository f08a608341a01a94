// Generated from shared/vocabulary.py by `lvbao openapi`; do not edit by hand.

export const TYPES = Object.freeze({"commute": "绿色出行", "clean_plate": "光盘行动", "waste_sorting": "垃圾分类", "ev_charging": "新能源充电"});
export const MODES = Object.freeze({"walk": "步行", "bike": "骑行", "bus": "公交", "metro": "地铁", "carpool": "拼车", "ev": "电动汽车"});
export const UNITS = Object.freeze({"km": "公里", "meal": "餐", "check_in": "次", "kwh": "度电"});
export const STATION_KINDS = Object.freeze({"canteen": "食堂回盘处", "sorting": "垃圾分类点"});
export const REASONS = Object.freeze({"distance_implausible": "距离与时间不符", "overlapping_trip": "与另一次出行时间重叠", "too_many_trips": "当天出行次数过多", "kwh_implausible": "充电量不合常理", "charging_rate_implausible": "充电速度不合常理", "rejected_by_admin": "管理员驳回", "insufficient_points": "积分不足", "out_of_stock": "库存不足", "limit_reached": "已达兑换上限"});
export const ACTION_STATUSES = Object.freeze({"accepted": "已入账", "pending_review": "待审核", "rejected": "未通过"});
export const REDEMPTION_STATUSES = Object.freeze({"pending": "处理中", "confirmed": "待领取", "rejected": "未成功", "fulfilled": "已领取", "cancelled": "已取消", "expired": "已过期"});
export const ENTRY_KINDS = Object.freeze({"award": "获得", "debit": "兑换", "refund": "退回", "reversal": "撤销", "adjustment": "调整", "expiry": "过期"});
